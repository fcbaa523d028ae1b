"""The explicit package list in pyproject.toml covers every package in the source tree."""

try:
    import tomllib
except ModuleNotFoundError:      # Python 3.10
    import tomli as tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    mapped = {k: v for k, v in cfg.get("package-dir", {}).items()}
    found = set()
    assert not mapped, f"every package lives under dymu_rt/ as it installs (no package-dir remapping): {mapped}"
    for init in (ROOT / "dymu_rt").rglob("__init__.py"):
        if "__pycache__" in init.parts:
            continue
        found.add(".".join(("dymu_rt", *init.parent.relative_to(ROOT / "dymu_rt").parts)))
    for top in ("cli", "profiles", "calibration"):
        assert not (ROOT / top).exists(), f"top-level {top}/ is gone: it lives in dymu_rt/{top}/"
    assert found == listed, f"unlisted: {sorted(found - listed)}; stale: {sorted(listed - found)}"


def test_shipped_profiles_are_package_data():
    import importlib.resources

    names = [e.name for e in importlib.resources.files("dymu_rt.profiles").iterdir()]
    assert "x86-64-cpu.toml" in names
