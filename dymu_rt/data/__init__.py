"""dymu_rt.data."""
