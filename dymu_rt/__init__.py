"""dymu-rt: deploy controllable dynamic multi-task networks.

The public API (loaded on first use, so ``import dymu_rt`` stays light and torch-free)::

    from dymu_rt import Runtime, Preference, read_manifest, build_bundle, train

* :class:`Runtime` -- open a bundle, ``set_preference(r, c)``, ``infer(images)``, ``stats()``
  (the deploy wing: numpy and onnxruntime, no torch);
* :class:`Preference` -- a validated (r, c); :func:`read_manifest` -- a bundle's typed
  manifest, checked on the way in;
* :func:`train` -- train (or resume) a run folder, what ``dymu-rt train`` does; returns the
  run (:class:`dymu_rt.run.layout.RunDir`); :func:`build_bundle` -- a trained run folder -> a
  bundle (both need ``dymu-rt[train]``).

The train wing's package is :mod:`dymu_rt.training` (not ``dymu_rt.train``, which would shadow
the function); the run folder's format is :mod:`dymu_rt.run`.
The floor plan (a torch-free core, a deploy wing, a train wing, the use cases, the CLI) is
in docs/INTERFACES.md and checked by ``lint-imports``. The library is importable without
the CLI (``dymu_rt/cli``), and without TensorRT.
"""

__version__ = "0.1.0"

# Before anything imports torch: OpenMP threads that spin while they wait starve every other
# process on the machine (and this one, next to any other load); see dymu_rt.core.threads.
from dymu_rt.core.threads import ensure_passive_wait_policy as _passive

_passive()
del _passive

#: public name -> module that defines it (PEP 562: imported on first use)
_PUBLIC = {
    "Runtime": "dymu_rt.runtime.runtime",
    "Preference": "dymu_rt.core.preference",
    "read_manifest": "dymu_rt.bundle.manifest",
    "build_bundle": "dymu_rt.methods",
    "train": "dymu_rt.app.train",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'dymu_rt' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_PUBLIC])
