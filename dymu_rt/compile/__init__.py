"""dymu_rt.compile."""
