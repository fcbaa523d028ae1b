"""dymu_rt.runtime."""
