"""Serving a bundle to many users from an inference server (the Runtime serves one process)."""
