"""dymu-rt: deploy controllable dynamic multi-task networks.

The library is importable without the CLI (``cli/``), and without TensorRT.
Data flows one way: data -> tasks/models -> control -> train/evaluate -> compile
-> backends -> runtime. Nothing lower imports anything higher.
"""

__version__ = "0.1.0"

# Before anything imports torch: OpenMP threads that spin while they wait starve every other
# process on the machine (and this one, next to any other load); see dymu_rt.core.threads.
from dymu_rt.core.threads import ensure_passive_wait_policy as _passive

_passive()
del _passive
