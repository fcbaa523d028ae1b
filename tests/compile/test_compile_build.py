"""Grid build: point counts, dedup, bundle contract, resume after a kill, no-op rerun, checksums."""

import json
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch

from dymu_rt.bundle import layout as B
from dymu_rt.methods import build_bundle
from dymu_rt.core.errors import BackendUnavailable, BundleError, ValidationError


@pytest.fixture(scope="module")
def built(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "b"
    return out, build_bundle(tiny_run, out, step="0.5", progress=False)


def test_grid_point_counts():
    from dymu_rt.core.preference import grid

    # r on the simplex with step 1/k: C(k+N-1, N-1) points; c: k_c + 1 values.
    assert len(grid(3, "0.5")) == 6 * 3
    assert len(grid(3, "0.25")) == 15 * 5
    assert len(grid(3, "0.1")) == 66 * 11
    assert len(grid(3, "0.5", "0.25")) == 6 * 5


def test_manifest_contract(built, tiny_run):
    out, summary = built
    m = B.verify_bundle(out).to_dict()
    assert m["schema_version"] == 3 and m["kind"] == "dymu-rt-bundle"
    for key in ("producer", "preset", "trained_on", "tasks", "preprocessing", "grid", "points",
                "topologies", "controller", "bn_layout", "bn_eps", "topology_salt", "weights", "latency",
                "engines"):
        assert key in m, key
    assert m["trained_on"] == "synth"
    assert [t["name"] for t in m["tasks"]] == ["semseg", "normals", "depth"]
    assert m["preprocessing"]["input_size"] == [32, 32] and m["preprocessing"]["normalize_in_graph"]
    assert m["grid"]["n_points"] == len(m["points"]) == 18 == summary["points"]
    assert sum(t["n_points"] for t in m["topologies"].values()) == 18
    assert 1 <= len(m["topologies"]) == summary["topologies"] <= 18
    graphs = sorted(p.name for p in (out / "graphs").iterdir())
    # one graph per topology, and the one weight file they all share
    assert graphs == sorted([f"{tid}.onnx" for tid in m["topologies"]] + ["weights.bin"])
    w = m["weights"]
    assert w["file"] == "graphs/weights.bin" and w["at"] == "anchor" and w["bn_deltas"] == 0.0
    assert w["bytes"] == (out / w["file"]).stat().st_size and w["tensors"]
    from dymu_rt.core.tree import topology_id

    for tid, t in m["topologies"].items():
        assert topology_id(np.asarray(t["parents"]), m["topology_salt"]) == tid
        assert t["bn_slots"] and all(s in {x["name"] for x in m["bn_layout"]} for s in t["bn_slots"])
        assert t["weights"] == "anchor" and "exported_at" not in t
    assert set(m["controller"]) == {"edge_hypernet", "weight_hypernet", "fold_params"}
    assert not (out / B.JOURNAL).exists()


def test_points_map_to_the_edge_hypernets_tree(built, tiny_run):
    from dymu_rt.run.layout import RunDir

    out, _ = built
    m = B.read_manifest(out).to_dict()
    _, anchor, edge, _ = RunDir(tiny_run).load_all()
    from dymu_rt.core.tree import canonicalize

    for p in m["points"][::3]:
        parents = edge.architecture(torch.tensor(p["r"]), torch.tensor(p["c"]))
        assert canonicalize(np.asarray(parents)).tolist() == m["topologies"][p["topology"]]["parents"]


def test_controller_onnx_equals_torch(built, tiny_run):
    from dymu_rt.run.layout import RunDir

    out, _ = built
    _, anchor, edge, weight = RunDir(tiny_run).load_all()
    r, c = [0.2, 0.3, 0.5], 0.7
    feeds = {"r": np.asarray([r], np.float32), "c": np.asarray([[c]], np.float32)}
    for f, net in (("edge_hypernet", edge), ("weight_hypernet", weight)):
        sess = ort.InferenceSession(str(out / "controller" / f"{f}.onnx"), providers=["CPUExecutionProvider"])
        got = sess.run(None, feeds)[0]
        ref = net(torch.tensor(r), torch.tensor(c)).detach().numpy()
        np.testing.assert_allclose(got.reshape(ref.shape), ref, atol=1e-4, rtol=1e-4)


def test_rerun_of_finished_build_is_noop(built, tiny_run):
    out, _ = built
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = build_bundle(tiny_run, out, step="0.5", progress=False)
    assert again["noop"] and again["built"] == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


class _Killed(Exception):
    pass


def test_interrupted_build_resumes_without_redoing_topologies(tiny_run, tmp_path):
    out = tmp_path / "b"
    done = []

    def kill_after_one(tid):
        done.append(tid)
        raise _Killed

    with pytest.raises(_Killed):
        build_bundle(tiny_run, out, step="0.5", c_step="1", progress=False, on_topology=kill_after_one)
    assert not (out / B.MANIFEST).exists()            # never a manifest of a partial build
    assert (out / B.JOURNAL).exists()
    with pytest.raises(BundleError):
        B.verify_bundle(out)
    finished = {p.name for p in (out / "graphs").iterdir()}
    assert finished == {f"{t}.onnx" for t in done} | {"weights.bin"}   # weights first, whole
    assert "graphs/weights.bin" in json.loads((out / B.JOURNAL).read_text())["files"]
    mtimes = {n: (out / "graphs" / n).stat().st_mtime_ns for n in finished}
    resumed = build_bundle(tiny_run, out, step="0.5", c_step="1", progress=False)
    assert resumed["topologies"] >= 2 and resumed["built"] == resumed["topologies"] - 1
    assert {n: (out / "graphs" / n).stat().st_mtime_ns for n in finished} == mtimes
    B.verify_bundle(out)


def test_corrupted_graph_is_detected(built, tmp_path):
    import shutil

    src, _ = built
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    m = B.verify_bundle(out).to_dict()
    victim = out / next(iter(m["topologies"].values()))["file"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="corrupt"):
        B.verify_bundle(out)
    victim.unlink()
    with pytest.raises(BundleError, match="missing"):
        B.verify_bundle(out)


def test_damaged_bundle_rebuild_redoes_only_the_damaged_file(built, tiny_run, tmp_path):
    import shutil

    src, _ = built
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    m = B.verify_bundle(out).to_dict()
    victim = out / next(iter(m["topologies"].values()))["file"]
    victim.write_bytes(b"garbage")
    s = build_bundle(tiny_run, out, step="0.5", progress=False)
    assert not s["noop"] and s["built"] == 1
    B.verify_bundle(out)


def test_damaged_weight_file_is_detected_and_rebuilt_alone(built, tiny_run, tmp_path):
    import shutil

    src, _ = built
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    m = B.verify_bundle(out).to_dict()
    weights = out / m["weights"]["file"]
    data = bytearray(weights.read_bytes())
    data[len(data) // 3] ^= 0x01                    # one flipped bit in one weight
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="weights.bin is corrupt"):
        B.verify_bundle(out)
    graphs = {p: p.stat().st_mtime_ns for p in (out / "graphs").glob("*.onnx")}
    s = build_bundle(tiny_run, out, step="0.5", progress=False)
    assert not s["noop"] and s["built"] == 0          # same anchor -> same bytes: graphs stay valid
    assert B.verify_bundle(out).to_dict()["weights"]["sha256"] == m["weights"]["sha256"]
    assert {p: p.stat().st_mtime_ns for p in (out / "graphs").glob("*.onnx")} == graphs


def test_different_grid_rebuilds_and_drops_stale_graphs(tiny_run, built, tmp_path):
    import shutil

    src, _ = built
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    s = build_bundle(tiny_run, out, step="0.5", c_step="1", progress=False)
    m = B.verify_bundle(out).to_dict()
    assert not s["noop"] and m["grid"]["n_points"] == 6 * 2
    assert {p.name for p in (out / "graphs").iterdir()} == {f"{t}.onnx" for t in m["topologies"]} | {"weights.bin"}


def test_tensorrt_without_tensorrt_fails_at_once_writing_nothing(tmp_path, monkeypatch):
    # A machine without the tensorrt package, on any machine (a GPU box with TensorRT too).
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    out = tmp_path / "trt"
    with pytest.raises(BackendUnavailable):
        build_bundle(tmp_path / "no-run", out, backend="tensorrt", progress=False)
    assert not out.exists()


def test_bad_inputs_are_refused(tiny_run, tmp_path):
    with pytest.raises(ValidationError, match="backend"):
        build_bundle(tiny_run, tmp_path / "x", backend="tflite", progress=False)
    with pytest.raises(ValidationError, match="no-such-profile"):
        build_bundle(tiny_run, tmp_path / "x", profile="no-such-profile", progress=False)
    with pytest.raises(ValidationError, match="workers"):
        build_bundle(tiny_run, tmp_path / "x", workers=0, progress=False)
    other = tmp_path / "not-a-bundle"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValidationError, match="not a dymu-rt bundle"):
        build_bundle(tiny_run, other, step="0.5", progress=False)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    assert not (tmp_path / "x").exists()
