"""dymu_rt.backends."""
