"""dymu_rt.train."""
