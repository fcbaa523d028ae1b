"""How a comparison is shown (evaluate/compare.py): the Markdown table, method labels, the
options a static run refuses, the Δ_T-vs-latency plot. Hand-made reports, no training. ~2 s."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dymu_rt.core.errors import ValidationError
from dymu_rt.evaluate import comparison as C


def _row(label, dt, lat, gmacs=0.5, params=2e6):
    return {"label": label, "delta_t": {"mean": dt, "per_task": {"seg": dt * 2, "depth": 0.0}},
            "metrics": {"seg": {"miou": 0.4567}, "depth": {"abs_err": 0.1234}}, "params": params,
            "gmacs": gmacs, "binding": "static", "latency_ms": {"p50": lat}, "budget": "anchor 600x8"}


REPORT = {"tasks": ["seg", "depth"], "primary": {"seg": "miou", "depth": "abs_err"}, "preset": "p", "n_val": 4,
          "latency_protocol": {"threads": 2},
          "rows": [_row("single-task", 0.0, 1.0), _row("DYMU c=0", -1.25, 2.0), _row("AdaShare", 3.5, 3.0, 1.0)]}


def test_markdown_table_by_hand():
    md = C.compare_markdown(REPORT).splitlines()
    assert md[0] == ("| method | Δ_T % | seg miou | depth abs_err | Δ seg % | Δ depth % | params (M) | GMACs | "
                     "binding | latency p50 ms | training budget |")
    assert md[1] == "|" + "---|" * 11
    assert md[2] == ("| single-task | +0.00 | 0.457 | 0.123 | +0.00 | +0.00 | 2.000 | 0.5000 | static | 1.000 | "
                     "anchor 600x8 |")
    assert md[3] == ("| DYMU c=0 | -1.25 | 0.457 | 0.123 | -2.50 | +0.00 | 2.000 | 0.5000 | static | 2.000 | "
                     "anchor 600x8 |")
    assert len(md) == 5 and C.compare_markdown(REPORT).endswith("\n")


@pytest.mark.parametrize("cfg, label", [({}, "DYMU"), ({"method": "dymu"}, "DYMU"), ({"method": "adashare"}, "AdaShare"),
                                        ({"method": "dag", "method_config": {"flow": 3}}, "DAG M=3")])
def test_method_labels(cfg, label):
    from dymu_rt.methods import method_for

    assert method_for(SimpleNamespace(read_config=lambda: cfg, path="r")).label(cfg) == label


@pytest.mark.parametrize("kw, flag", [({"grid": "0.1"}, "--grid"), ({"c_grid": "0.5"}, "--c-grid"),
                                      ({"c": 0.5}, "--c"), ({"trees": ["0,0"]}, "--tree")])
def test_static_eval_refuses_preference_options(kw, flag, tmp_path):
    with pytest.raises(ValidationError, match=f"^{flag} does not apply to .*: it holds one static architecture"):
        C.evaluate_static_run(tmp_path, None, "", **kw)


@pytest.mark.parametrize("n", [0, True, 1.5])
def test_static_eval_refuses_bad_n_val(n, tmp_path):
    with pytest.raises(ValidationError, match=rf"^--n-val {n}: expected an integer >= 1$"):
        C.evaluate_static_run(tmp_path, None, "", n_val=n)


def test_plot_compare_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = C.plot_compare(REPORT, tmp_path / "cmp.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
