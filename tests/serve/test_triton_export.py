"""`dymu-rt export triton`: repository layout, configs against Triton's ModelConfig, versions,
atomicity, vendored router code, input validation."""

import ast
import json
import sys

import numpy as np
import pytest

from serve_helpers import prune_bundle, repository_digest

from dymu_rt.core.errors import ValidationError
from dymu_rt.serve.triton import check_repository, export_triton
from dymu_rt.serve.triton import export as E
from dymu_rt.serve.triton.config import parse_config
from dymu_rt.serve.triton.vendor import LISTING, MODULES, PACKAGE, source_root
from dymu_rt.core.io import sha256_file


def _params(cfg):
    return {k: v.string_value for k, v in cfg.parameters.items()}


def _kinds(cfg):
    from tritonclient.grpc import model_config_pb2

    return [model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind) for g in cfg.instance_group]


def test_every_config_parses_and_matches_its_model(shipped_repo, shipped_bundle):
    """Triton's own ModelConfig parses every config.pbtxt; inputs/outputs exist in model.onnx
    with the same dtype and shape (check_repository), and the dymu-rt parameters are there."""
    from dymu_rt.bundle.layout import read_manifest

    m = read_manifest(shipped_bundle).to_dict()
    assert check_repository(shipped_repo) == []
    names = sorted(p.name for p in shipped_repo.iterdir())
    assert names == sorted(["dymu", "dymu_edge_hypernet", "dymu_weight_hypernet",
                            *(f"dymu_topo_{t}" for t in m["topologies"])])
    sha = sha256_file(shipped_bundle / "manifest.json")
    for name in names:
        cfg = parse_config(shipped_repo / name / "config.pbtxt")
        assert _params(cfg)["dymu_rt.bundle_sha256"] == sha
        assert json.loads(_params(cfg)["dymu_rt.producer"]) == m["producer"]
        assert _kinds(cfg) == ["KIND_CPU"]
    router = parse_config(shipped_repo / "dymu" / "config.pbtxt")
    assert json.loads(_params(router)["dymu_rt.preprocessing"]) == m["preprocessing"]
    tid = next(iter(m["topologies"]))
    cfg = parse_config(shipped_repo / f"dymu_topo_{tid}" / "config.pbtxt")
    assert cfg.max_batch_size == 8 and cfg.HasField("dynamic_batching")
    slots = m["topologies"][tid]["bn_slots"]
    assert cfg.input[0].name == "image"
    assert sorted(t.name for t in cfg.input[1:]) == sorted(f"{s}.{k}" for s in slots for k in ("scale", "shift"))
    channels = {s["name"]: s["channels"] for s in m["bn_layout"]}
    for t in cfg.input[1:]:                                            # [B, C, 1, 1] with B batched
        assert list(t.dims) == [channels[t.name.rsplit(".", 1)[0]], 1, 1]
    assert {t.name: list(t.dims) for t in cfg.output} == {
        "semseg": [13, 64, 64], "normals": [3, 64, 64], "depth": [1, 64, 64]}


def test_check_repository_finds_a_mismatch(shipped_repo, tmp_path):
    """The check is not vacuous: a config naming a wrong dim or an unknown input is reported."""
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(shipped_repo, repo)
    topo = next(p for p in repo.iterdir() if p.name.startswith("dymu_topo_"))
    text = (topo / "config.pbtxt").read_text()
    (topo / "config.pbtxt").write_text(text.replace("dims: [ 3, 64, 64 ]", "dims: [ 3, 64, 65 ]", 1))
    (repo / "dymu_edge_hypernet" / "config.pbtxt").write_text(
        (repo / "dymu_edge_hypernet" / "config.pbtxt").read_text().replace('name: "c"', 'name: "cc"'))
    problems = check_repository(repo)
    assert any("'image'" in p and topo.name in p for p in problems)
    assert any("'cc' is not in model.onnx" in p for p in problems)
    (repo / "dymu" / "config.pbtxt").write_text("name: \"dymu\"\nbogus_field: 1\n")
    assert any("does not parse as a Triton ModelConfig" in p for p in check_repository(repo))


def test_topology_model_batches_mixed_preferences(shipped_repo):
    """A topology model run with per-image scale/shift [B, C, 1, 1] equals per-image runs."""
    import onnxruntime as ort

    topo = next(p for p in sorted(shipped_repo.iterdir()) if p.name.startswith("dymu_topo_"))
    sess = ort.InferenceSession(str(topo / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 64, 64), dtype=np.float32)
    feeds = {"image": x}
    for i in sess.get_inputs()[1:]:
        feeds[i.name] = rng.uniform(0.5, 1.5, (2, *i.shape[1:])).astype(np.float32)
    both = sess.run(None, feeds)
    for b in range(2):
        one = sess.run(None, {k: v[b:b + 1] for k, v in feeds.items()})
        for a, o in zip(both, one):
            np.testing.assert_allclose(a[b:b + 1], o, rtol=1e-5, atol=1e-5)
    # image 1 with image 0's scale/shift gives another answer: the rows really are per image
    swapped = sess.run(None, {k: (v if k == "image" else v[[0, 0]]) for k, v in feeds.items()})
    assert not np.allclose(both[0][1], swapped[0][1])


def test_tensorrt_backend_configs(small_bundle, tmp_path):
    repo = tmp_path / "repo"
    export_triton(small_bundle, repo, backend="tensorrt", max_batch=4)
    assert check_repository(repo) == []
    for p in repo.iterdir():
        cfg = parse_config(p / "config.pbtxt")
        if p.name.startswith("dymu_topo_"):
            assert _kinds(cfg) == ["KIND_GPU"]
            (acc,) = cfg.optimization.execution_accelerators.gpu_execution_accelerator
            assert acc.name == "tensorrt" and acc.parameters["precision_mode"] == "FP32"
            assert cfg.max_batch_size == 4
        else:                 # router and hypernets stay on the CPU
            assert _kinds(cfg) == ["KIND_CPU"]


def test_same_bundle_again_is_a_noop_and_a_rebuilt_one_a_new_version(small_bundle, tmp_path):
    repo = tmp_path / "repo"
    first = export_triton(small_bundle, repo)
    digest = repository_digest(repo)
    again = export_triton(small_bundle, repo)
    assert (first["version"], first["noop"], again["version"], again["noop"]) == (1, False, 1, True)
    assert repository_digest(repo) == digest

    rebuilt = prune_bundle(small_bundle, tmp_path / "rebuilt", 2, tag="rebuilt")
    second = export_triton(rebuilt, repo)
    assert (second["version"], second["noop"]) == (2, False)
    sha = sha256_file(rebuilt / "manifest.json")
    for p in repo.iterdir():
        versions = sorted(int(v.name) for v in p.iterdir() if v.is_dir())
        if p.name in second["models"]:
            assert versions[-1] == 2
            assert _params(parse_config(p / "config.pbtxt"))["dymu_rt.bundle_sha256"] == sha
        else:                 # a topology the rebuilt bundle lacks keeps its old version only
            assert versions == [1]
    assert json.loads((repo / "dymu" / "2" / "router.json").read_text())["bundle_sha256"] == sha
    assert (repo / "dymu" / "1" / "router.json").is_file()          # old version kept for a rolling update
    assert check_repository(repo) == []
    # the same settings with another --max-batch is a new version too
    assert export_triton(rebuilt, repo, max_batch=2)["version"] == 3


def test_failed_export_leaves_the_repository_untouched(small_bundle, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    export_triton(small_bundle, repo)
    digest = repository_digest(repo)
    rebuilt = prune_bundle(small_bundle, tmp_path / "rebuilt", 3, tag="x")
    real, calls = E._topology_onnx, []

    def failing(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(*a, **k)

    monkeypatch.setattr(E, "_topology_onnx", failing)
    with pytest.raises(OSError):
        export_triton(rebuilt, repo)
    assert repository_digest(repo) == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "rebuilt", "repo"]   # no staging left
    calls.clear()
    with pytest.raises(OSError):
        export_triton(rebuilt, tmp_path / "new")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("kwargs, words", [
    ({"backend": "tflite"}, "--backend 'tflite' is unknown"),
    ({"max_batch": 0}, "--max-batch 0"),
    ({"max_batch": 2.5}, "--max-batch 2.5"),
])
def test_bad_options_are_refused(small_bundle, tmp_path, kwargs, words):
    with pytest.raises(ValidationError, match=words.replace("(", r"\(")):
        export_triton(small_bundle, tmp_path / "repo", **kwargs)
    assert not (tmp_path / "repo").exists()


def test_foreign_out_folder_and_out_inside_bundle_are_refused(small_bundle, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValidationError, match="not empty and holds no dymu/config.pbtxt"):
        export_triton(small_bundle, other)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    with pytest.raises(ValidationError, match="inside the bundle"):
        export_triton(small_bundle, small_bundle / "triton")


def test_vendored_router_code_is_the_dymu_rt_source(shipped_repo):
    """Each vendored module is its dymu_rt.core source byte for byte (no rewriting), and the
    listing names each source's sha256."""
    folder = shipped_repo / "dymu" / "1"
    for rel in MODULES:
        assert (folder / PACKAGE / rel).read_bytes() == (source_root() / rel).read_bytes(), rel
    listing = json.loads((folder / PACKAGE / LISTING).read_text())
    assert listing["sha256"] == {rel: sha256_file(source_root() / rel) for rel in MODULES}
    shipped = sorted(p.relative_to(folder / PACKAGE).as_posix() for p in (folder / PACKAGE).rglob("*") if p.is_file())
    assert shipped == sorted([*MODULES, LISTING])
    assert (folder / "model.py").read_bytes() == E.ROUTER_TEMPLATE.read_bytes()


def test_router_closure_is_complete():
    """MODULES is closed under the relative imports of its files (nothing the router needs is
    left behind), and every core file imports its fellows relatively (what makes copying
    verbatim possible)."""
    for rel in MODULES:
        tree = ast.parse((source_root() / rel).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                targets = [f"{node.module}.py"] if node.module else [f"{a.name}.py" for a in node.names]
                for target in targets:
                    assert target in MODULES, f"{rel} imports .{target[:-3]}, which the router copy lacks"
    for path in sorted(source_root().glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert not node.module.startswith("dymu_rt"), f"core/{path.name} imports {node.module} absolutely"


#: function-level imports of other packages in vendored modules, with why the router never runs them
LAZY_ALLOWED = {("preference.py", "sample_r", "torch"): "training helper (torch tensors)"}


def test_vendored_modules_import_only_numpy_stdlib_and_each_other(shipped_repo):
    folder = shipped_repo / "dymu" / "1"
    allowed = set(sys.stdlib_module_names) | {"numpy", PACKAGE, "triton_python_backend_utils", "dymu_site"}
    for path in [folder / "model.py", folder / "dymu_site.py", *sorted((folder / PACKAGE).rglob("*.py"))]:
        rel = str(path.relative_to(folder / PACKAGE)) if PACKAGE in path.parts else path.name
        tree = ast.parse(path.read_text())
        owner = {}
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    owner.setdefault(id(node), fn.name)
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for n in names:
                top = n.split(".")[0]
                if top not in allowed:
                    assert (rel, owner.get(id(node)), top) in LAZY_ALLOWED, f"{rel} imports {n}"


def test_router_code_runs_without_dymu_rt_torch_onnx_or_safetensors(shipped_repo):
    """In a fresh interpreter where dymu_rt, torch, onnx, onnxruntime and safetensors cannot be
    imported, the vendored package loads the router's files and decides as in-process."""
    import subprocess
    import textwrap

    folder = shipped_repo / "dymu" / "1"
    code = textwrap.dedent(f"""
        import sys
        for name in ("dymu_rt", "torch", "onnx", "onnxruntime", "safetensors", "cli"):
            sys.modules[name] = None            # import of any of these now raises ImportError
        sys.path.insert(0, {str(folder)!r})
        import numpy as np
        from dymu_vendor.routing import RouterSpec
        from dymu_vendor.errors import ValidationError
        spec = RouterSpec.load({str(folder)!r})
        (pref,) = spec.preferences(np.array([[0.2, 0.3, 0.5]], np.float32), np.array([[0.5]], np.float32))
        logits = np.zeros((spec.num_layers - 1, spec.n_tasks, spec.n_tasks), np.float32)
        d = spec.decide(pref, logits)
        D = max(o + 2 * c for o, c in spec.spec["bn_layout"].values())   # the bundle's delta size
        a = spec.affine_inputs(d.topology, np.zeros(D, np.float32))
        try:
            spec.preferences(np.array([[0.5, 0.5, 0.5]], np.float32), np.array([[0.5]], np.float32))
        except ValidationError as e:
            print("refused:", e)
        print(d.binding, len(a))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "refused: row 0: r = 0.5,0.5,0.5" in out.stdout
    assert out.stdout.split()[-2] in ("exact", "nearest-grid") and int(out.stdout.split()[-1]) > 0


def test_export_needs_no_torch_or_onnx(small_bundle, tmp_path):
    """The export runs on the base install: torch, onnx, onnx-graphsurgeon, scipy and
    matplotlib refused in a fresh interpreter (the hypernets are the bundle's ONNX graphs)."""
    import subprocess
    import textwrap

    code = textwrap.dedent(f"""
        import sys
        for name in ("torch", "onnx", "onnx_graphsurgeon", "scipy", "matplotlib"):
            sys.modules[name] = None            # import of any of these now raises ImportError
        from dymu_rt.serve.triton import export_triton
        print(export_triton({str(small_bundle)!r}, {str(tmp_path / "repo")!r})["version"])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "1"
    assert check_repository(tmp_path / "repo") == []
