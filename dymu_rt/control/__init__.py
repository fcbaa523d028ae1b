"""dymu_rt.control."""
