"""The run folder (``dymu-rt train --out RUN``) as an artifact format, beside the bundle.

* :mod:`dymu_rt.run.layout` -- :class:`~dymu_rt.run.layout.RunDir`: the layout, the config and
  its stage records, resumable training state, the safetensors I/O of the trained modules;
  :func:`~dymu_rt.run.layout.method_of`;
* :mod:`dymu_rt.run.schema` -- the trust boundary of ``config.json`` (every field checked at the door);
* :mod:`dymu_rt.run.logs` -- the stage logs ``logs/*.jsonl``.

Compile, evaluate, compare and inspect read a run through this package and never through
:mod:`dymu_rt.training` (the training loops, which write it); ``lint-imports`` holds both
walls (.importlinter: ``run-readers``, ``train-layers``).
"""
