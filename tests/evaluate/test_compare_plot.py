"""What `dymu-rt compare`'s Δ_T-vs-latency PNG shows (evaluate/compare.py::plot_compare), read
from the matplotlib figure before it is saved: every marker where its row says, coloured by
method, sized by GMACs; every label's text and where it sits (left of the right-most points,
stacked apart in a cluster); the axis texts. A hand-made report; expected values worked out
in the comments. ~2 s (matplotlib import)."""

from __future__ import annotations

import pytest

from dymu_rt.evaluate import comparison as C

mpl = pytest.importorskip("matplotlib")
from matplotlib.colors import to_rgba  # noqa: E402


def _row(label, x, y, gmacs, params):
    return {"label": label, "latency_ms": {"p50": x}, "delta_t": {"mean": y}, "gmacs": gmacs, "params": params,
            "binding": "folded" if label.startswith("DYMU") else "static"}


# xs span 1..10 (9), ys span -3..4 (7); "near" = hypot(dx/9, dy/7) < 0.15.
ROWS = [
    _row("single-task", 1.0, 0.0, 0.5, 1.0e6),      # 0: alone, rank 0, right of its marker
    _row("DYMU c=0", 5.0, 2.0, 1.0, 2.5e6),         # 1: near 2 (higher) and 7 (same y, later): rank 1
    _row("DYMU c=1", 5.1, 2.05, 0.25, 2.5e6),       # 2: highest of the cluster: rank 0
    _row("AdaShare", 10.0, 4.0, 2.0, 3.25e6),       # 3: right-most (10 > 1 + 0.65*9 = 6.85): label left
    _row("DAG M=3", 7.0, -3.0, 1.5, 1.5e6),         # 4: 7 > 6.85: label left
    _row("PHN-BN", 3.0, 1.0, 0.5, 2.0e6),           # 5: alone
    _row("other", 3.0, -2.0, 0.5, 0.123456e6),      # 6: unknown method: black
    _row("DYMU c=0.5", 5.05, 2.0, 0.5, 2.5e6),      # 7: near 1 (same y, earlier) and 2 (higher): rank 2
]
RANK = [0, 1, 0, 0, 0, 0, 0, 2]
# PHN-BN's label (right of (3, 1)) is long enough to reach the cluster at x = 5, where the
# rank-2 label sits (5.05, 2.0 - 26 pt): the only overlap, so it is moved down.
MOVED = 5
LEFT = [False, False, False, True, True, False, False, False]
COLOUR = ["#555555", "#1f77b4", "#1f77b4", "#d62728", "#2ca02c", "#8c564b", "#000000", "#1f77b4"]
REPORT = {"rows": ROWS, "preset": "synth-nyu", "n_val": 16, "latency_protocol": {"threads": 2}}


@pytest.fixture
def figure(monkeypatch, tmp_path):
    got = {}

    def keep(fig, out):
        got["fig"] = fig
        return out

    monkeypatch.setattr(C, "_save", keep)

    def draw(report):
        assert C.plot_compare(report, tmp_path / "c.png") == tmp_path / "c.png"
        return got["fig"].axes[0]

    return draw


def test_markers_sit_at_latency_and_delta_t_coloured_by_method_sized_by_gmacs(figure):
    ax = figure(REPORT)
    dots = ax.collections
    assert len(dots) == len(ROWS)
    for dot, row, col in zip(dots, ROWS, COLOUR):
        assert [tuple(p) for p in dot.get_offsets()] == [(row["latency_ms"]["p50"], row["delta_t"]["mean"])]
        assert tuple(dot.get_facecolor()[0]) == pytest.approx(to_rgba(col, 0.8))
        assert tuple(dot.get_edgecolor()[0]) == pytest.approx(to_rgba("black", 0.8))
        assert list(dot.get_sizes()) == pytest.approx([30 + 400 * row["gmacs"] / 2.0])     # gmax = 2.0
        assert list(dot.get_linewidths()) == [0.5]


def test_labels_name_params_and_gmacs_and_stack_apart_in_a_cluster(figure):
    ax = figure(REPORT)
    notes = ax.texts
    assert len(notes) == len(ROWS)
    for i, (note, row, rank, left) in enumerate(zip(notes, ROWS, RANK, LEFT)):
        assert note.get_text() == f"{row['label']}: {row['params'] / 1e6:.2f} M, {row['gmacs']:.3f} GMACs"
        assert note.xy == (row["latency_ms"]["p50"], row["delta_t"]["mean"])
        if i == MOVED:          # its label ran into the cluster's: moved straight down (see below)
            assert note.xyann[0] == 10 and note.xyann[1] < 6, note.xyann
        else:
            assert note.xyann == ((-10 if left else 10), 6 - 16 * rank), row["label"]
        assert note.get_ha() == ("right" if left else "left")
        assert note.get_fontsize() == 7
        # a leader line only where the label left its marker's side (stacked or moved)
        assert note.arrow_patch.get_visible() == (rank > 0 or i == MOVED), row["label"]
        assert note.anncoords == "offset points"
        assert note.arrow_patch.get_linewidth() == pytest.approx(0.4)
        assert tuple(note.arrow_patch.get_edgecolor()) == pytest.approx(to_rgba("#777777"))
    assert notes[6].get_text() == "other: 0.12 M, 0.500 GMACs"


def test_axis_texts_and_the_zero_line(figure):
    ax = figure(REPORT)
    assert ax.get_xlabel() == ("latency p50 (ms; dymu-rt runtime, x86-64-cpu fp32, 2 thread(s), batch 1; "
                               "DYMU rows folded, the others static)")
    assert ax.get_ylabel() == "Δ_T vs single-task (%, higher is better)"
    assert ax.get_title() == "synth-nyu: accuracy vs latency (16 val scenes; marker area ~ GMACs)"
    (zero,) = [ln for ln in ax.get_lines() if list(ln.get_ydata()) == [0.0, 0.0]]
    assert zero.get_color() == "#999999" and zero.get_linestyle() == "--" and zero.get_linewidth() == 0.8
    assert ax.xaxis.label.get_size() == 8 and ax.title.get_size() == 9
    assert tuple(ax.figure.get_size_inches()) == (7.5, 5.0)
    assert {g.get_alpha() for g in ax.xaxis.get_gridlines() + ax.yaxis.get_gridlines()} == {0.3}
    assert all(g.get_visible() for g in ax.xaxis.get_gridlines())
    ax = figure({**REPORT, "latency_protocol": {"threads": 1, "profile": "arm64-cpu", "precision": "int8"}})
    assert ax.get_xlabel().startswith("latency p50 (ms; dymu-rt runtime, arm64-cpu int8, 1 thread(s), batch 1;")
    # the binding named is the rows' own (compare's table column), not a fixed phrase
    ax = figure({**REPORT, "rows": [{**r, "binding": "affine" if r["binding"] == "folded" else "static"}
                                    for r in ROWS]})
    assert ax.get_xlabel().endswith("; DYMU rows affine, the others static)")


def test_one_row_or_equal_latencies_do_not_divide_by_zero(figure):
    ax = figure({**REPORT, "rows": [ROWS[0]]})
    assert ax.texts[0].xyann == (10, 6) and not ax.texts[0].arrow_patch.get_visible()
    same = [_row("DYMU c=0", 2.0, 1.0, 1.0, 1e6), _row("DYMU c=1", 2.0, 1.0, 1.0, 1e6)]
    ax = figure({**REPORT, "rows": same})
    # same point: the later one is ranked below the earlier (tie to the lower index)
    assert [t.xyann for t in ax.texts] == [(10, 6), (10, -10)]


def test_nearness_is_relative_to_each_axis_span_and_params_round_in_millions(figure):
    # ys span -3..4 = 7: 0.7 apart at the same latency is 0.1 of the span, so near (stacked);
    # 2.005001 M params prints 2.01 (a divisor off by one in the millions would print 2.00)
    rows = [_row("DYMU c=0", 1.0, 4.0, 1.0, 2_005_001), _row("DYMU c=1", 1.0, 3.3, 1.0, 1e6),
            _row("AdaShare", 10.0, -3.0, 1.0, 1e6)]
    ax = figure({**REPORT, "rows": rows})
    assert [t.xyann for t in ax.texts] == [(10, 6), (10, -10), (-10, 6)]
    assert ax.texts[0].get_text() == "DYMU c=0: 2.01 M, 1.000 GMACs"


def test_no_two_labels_overlap(figure):
    """Labels of points far apart in latency but long enough to meet (REPORT's PHN-BN and the
    DYMU cluster; compare's real synth-nyu table had DAG M=3 / M=7 / single-task) are moved
    apart: no two label texts share a pixel."""
    from matplotlib.text import Text

    ax = figure(REPORT)
    renderer = ax.figure.canvas.get_renderer()
    boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]
    for i in range(len(boxes)):
        for j in range(i):
            assert not boxes[i].overlaps(boxes[j]), (ax.texts[i].get_text(), ax.texts[j].get_text())
