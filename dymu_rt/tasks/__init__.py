"""dymu_rt.tasks."""
