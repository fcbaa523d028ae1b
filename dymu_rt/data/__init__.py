"""Multi-task data: procedural scenes and loaders for NYU-v2, PASCAL-Context, CIFAR-100.

Every dataset returns the sample contract of docs/INTERFACES.md
(``{"image", "targets", "masks"}``). The trainer calls :func:`make_dataset`.
Modules: ``scene`` + ``raycast`` + ``synth`` (procedural scenes), ``writer`` (on-disk
export), ``nyuv2`` / ``pascal`` / ``cifar`` (loaders), ``transforms`` (augmentation).
"""

from dymu_rt.data.factory import detect_layout, make_dataset

__all__ = ["detect_layout", "make_dataset"]
