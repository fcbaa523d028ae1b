"""The bundle: the one home of its layout, typed manifest and sections (docs/INTERFACES.md).

Imports only :mod:`dymu_rt.core.errors` and :mod:`dymu_rt.utils`."""
