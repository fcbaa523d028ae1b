"""dymu-rt: deploy controllable dynamic multi-task networks.

The library is importable without the CLI (``cli/``), and without TensorRT.
Data flows one way: data -> tasks/models -> control -> train/evaluate -> compile
-> backends -> runtime. Nothing lower imports anything higher.
"""

__version__ = "0.1.0"
