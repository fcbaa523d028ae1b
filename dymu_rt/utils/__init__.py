"""Terminal helpers shared by the commands and long jobs (progress bars). The torch-free
building blocks (file I/O, hashing, limits, units, images) live in :mod:`dymu_rt.core`."""
