"""dymu_rt.assets."""
