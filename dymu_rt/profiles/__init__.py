"""Device profiles (TOML), shipped as package data ``dymu_rt.profiles``."""
