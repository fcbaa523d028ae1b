"""dymu_rt.evaluate."""
