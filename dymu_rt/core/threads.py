"""CPU threading policy: how PyTorch's OpenMP threads wait (set before torch is imported).

How many threads training uses is :func:`dymu_rt.training.common.set_threads` (the layer that
has torch).

OpenMP's default wait policy lets a worker thread spin for a while after each parallel
region, waiting for the next one. On a machine of its own that saves a wake-up; next to
any other busy process the spinning threads take the cores the work needs (a training
step measured 5.1x slower next to another process on 2 cores). The OpenMP runtime reads
``OMP_WAIT_POLICY`` once, when it is loaded (that is, when torch is imported), so
:func:`ensure_passive_wait_policy` must run before ``import torch``; ``dymu_rt/__init__``
calls it, so importing dymu_rt (or running the CLI) first is enough. A policy the user set
is left alone. Importing torch before dymu_rt keeps OpenMP's default.
"""

from __future__ import annotations

import os
import sys



def ensure_passive_wait_policy() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user set a policy; True when it was set here.

    Does nothing once torch is loaded: the OpenMP runtime has read the variable already.
    """
    if "OMP_WAIT_POLICY" in os.environ or "torch" in sys.modules:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True
