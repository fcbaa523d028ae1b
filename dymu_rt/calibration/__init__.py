"""Calibration sets and caches for INT8, shipped as ``dymu_rt.calibration``."""
