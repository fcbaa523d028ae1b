"""The CLI's one door to the library (dymu_rt/cli/library.py): its name -> module table and its
TYPE_CHECKING imports name the same things, every name resolves, an unknown one is an
AttributeError, and ``--help`` of the CLI and of every command loads no torch, onnxruntime or
matplotlib. Cost: ~3 s (one subprocess for every --help; the import of every door name)."""

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dymu_rt.cli import library

COMMANDS = [[], ["train"], ["train", "anchor"], ["train", "controller"], ["data", "synth"], ["eval"], ["compare"],
            ["inspect"], ["build"], ["plot"], ["run"], ["profile"], ["profiles"], ["calibrate"], ["check"],
            ["export", "triton"], ["demo"]]


def test_table_and_type_checking_imports_agree():
    tree = ast.parse(Path(library.__file__).read_text(encoding="utf-8"))
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    static = {a.name: node.module for node in block.body for a in node.names}
    assert static == library._DOOR


def test_every_name_resolves_to_its_module_attribute():
    import importlib

    for name, module in library._DOOR.items():
        assert getattr(library, name) is getattr(importlib.import_module(module), name), name
    assert sorted(library.__all__) == sorted(library._DOOR)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        library.nope  # noqa: B018


def test_help_of_every_command_loads_no_heavy_library():
    code = textwrap.dedent(f"""
        import json, sys
        from dymu_rt.cli.main import main
        for args in {COMMANDS!r}:
            try:
                main([*args, "--help"])
            except SystemExit as e:
                assert e.code in (0, None), (args, e.code)
        print(json.dumps(sorted(m for m in ("torch", "onnxruntime", "matplotlib", "scipy") if m in sys.modules)))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Usage: dymu-rt export triton" in res.stdout and "Usage: dymu-rt train anchor" in res.stdout
    assert json.loads(res.stdout.strip().splitlines()[-1]) == []
