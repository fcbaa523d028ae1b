"""dymu_rt.models."""
