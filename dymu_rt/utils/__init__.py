"""Small shared helpers (atomic file I/O, hashing, progress bars)."""
