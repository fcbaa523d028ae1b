"""The methods registry (issue 26): families register by decorator, one lookup refuses an unknown
name, the names the deploy wing and the run schema keep as data agree with the registry, and
no module outside dymu_rt/methods compares a method's name (an AST scan that fails on an
injected comparison). Cost: < 1 s (parses the package's ~240 files once)."""

import ast
from pathlib import Path

import pytest

from dymu_rt.bundle.schema import STATIC_METHODS
from dymu_rt.core.errors import ValidationError
from dymu_rt.methods import Method, family_of, get_method, method_for, method_names, register_method
from dymu_rt.run import schema as run_schema

PACKAGE = Path(__file__).resolve().parents[2] / "dymu_rt"
NAMES = frozenset(method_names())


def _literals(node: ast.AST) -> list[str]:
    """The method names a comparison operand spells: a string constant, or a tuple / list /
    set of them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value] if node.value in NAMES else []
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [n for e in node.elts for n in _literals(e)]
    return []


def method_name_comparisons(root: Path, skip: str = "methods") -> list[str]:
    """``file:line name`` of every ==, !=, in, not in, is (not) or match case comparing with a
    method-name literal in the .py files under ``root``, outside ``root/skip``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] == skip:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
            elif isinstance(node, ast.MatchValue):
                operands = [node.value]
            else:
                continue
            for name in (n for op in operands for n in _literals(op)):
                found.append(f"{rel.as_posix()}:{node.lineno} {name!r}")
    return found


def test_no_method_name_is_compared_outside_the_registry():
    assert NAMES >= {"dymu", "adashare", "dag", "single-task", "phn-bn", "dymu-retrained"}
    assert method_name_comparisons(PACKAGE) == []


@pytest.mark.parametrize("line", ['if method == "adashare":\n    pass\n',
                                  'ok = m not in ("dymu", "x")\n',
                                  'ok = "dag" != cfg.get("method")\n',
                                  'match m:\n    case "phn-bn":\n        pass\n'])
def test_the_scan_fails_on_an_injected_comparison(tmp_path, line):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "x.py").write_text("m = cfg = None\n" + line)
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "y.py").write_text('ok = m == "dag"\n')          # the registry may
    found = method_name_comparisons(tmp_path)
    assert len(found) == 1 and found[0].split()[0] in ("train/x.py:2", "train/x.py:3"), found


def test_the_names_kept_as_data_agree_with_the_registry():
    assert set(STATIC_METHODS) == {n for n in method_names() if get_method(n).bundle == "static"}
    assert run_schema.METHODS == method_names(own_run=True)
    assert {n: set(run_schema.RUN_STAGES[n]) for n in method_names(own_run=True)} == \
        {n: ({"anchor", "edge", "weight"} if get_method(n).bundle == "grid" else {"warmup", "search", "final"})
         for n in method_names(own_run=True)}
    for n in method_names(own_run=True):
        assert get_method(n).done_stage in run_schema.RUN_STAGES[n]


def test_each_family_registers_its_methods():
    assert {n: family_of(n) for n in method_names()} == {
        "dymu": "dymu", "adashare": "adashare", "dag": "dag",
        "single-task": "baselines", "phn-bn": "baselines", "dymu-retrained": "baselines"}
    assert [get_method(n).bundle for n in method_names(own_run=True)] == ["grid", "static", "static"]
    for n in method_names(own_run=True):                      # every method with runs trains and lowers itself
        m = type(get_method(n))
        assert m.train is not Method.train and m.lower is not Method.lower, n
    for n in method_names(own_run=False):
        with pytest.raises(ValidationError, match="has no trainer of its own"):
            get_method(n).train(None)


def test_unknown_and_duplicate_names_are_refused():
    with pytest.raises(ValidationError, match=r"^--method 'mtan' is not valid; expected one of dymu, adashare, dag$"):
        get_method("mtan")
    with pytest.raises(ValidationError, match=r"^--method 'phn-bn' is not valid"):
        get_method("phn-bn", own_run=True)
    with pytest.raises(ValueError, match="registered twice"):
        register_method(type("Again", (Method,), {"name": "dag"}))
    with pytest.raises(ValueError, match="bundle must be"):
        register_method(type("Odd", (Method,), {"name": "odd", "bundle": "stream"}))
    assert "odd" not in method_names()


@pytest.mark.parametrize("cfg, bundle, label", [({}, "grid", "DYMU"),                # no method: DYMU's
                                               ({"method": "dag", "method_config": {"flow": 2}}, "static", "DAG M=2")])
def test_a_run_is_looked_up_by_its_recorded_method(cfg, bundle, label):
    from types import SimpleNamespace

    m = method_for(SimpleNamespace(read_config=lambda: cfg, path="r"))
    assert (m.bundle, m.label(cfg)) == (bundle, label)
