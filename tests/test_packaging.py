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
    # top-level folder -> the package it installs as (cli/ is dymu_rt.cli)
    for top, name in (("dymu_rt", "dymu_rt"), ("cli", "dymu_rt.cli")):
        for init in (ROOT / top).rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            found.add(".".join((name, *init.parent.relative_to(ROOT / top).parts)))
    for pkg, folder in mapped.items():
        assert (ROOT / folder / "__init__.py").is_file(), f"{folder}/ must be a package for {pkg}"
        found.add(pkg)
    assert "cli" not in listed, "the CLI installs as dymu_rt.cli, never as a top-level `cli` package"
    assert found == listed, f"unlisted: {sorted(found - listed)}; stale: {sorted(listed - found)}"


def test_shipped_profiles_are_package_data():
    import importlib.resources

    names = [e.name for e in importlib.resources.files("dymu_rt.profiles").iterdir()]
    assert "x86-64-cpu.toml" in names
