"""The runtime on a bundle written by the real compiler (`dymu-rt build`), against torch."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "compile"))

from run_fixture import make_tiny_run  # noqa: E402

from dymu_rt.methods import build_bundle  # noqa: E402
from dymu_rt.runtime import Runtime  # noqa: E402
from dymu_rt.run.layout import RunDir  # noqa: E402


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    base = tmp_path_factory.mktemp("real")
    run = make_tiny_run(base / "run")
    build_bundle(run, base / "bundle", step="0.5", progress=False)
    return run, base / "bundle"


def test_exact_preference_matches_torch_anchor(real):
    run, bundle = real
    preset, anchor, edge, weight = RunDir(run).load_all()
    rt = Runtime.open(bundle)
    r, c = [0.5, 0.25, 0.25], 0.3                      # off the 0.5 grid: exact or nearest
    info = rt.set_preference(r, c)
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    out = rt.infer(x)
    if info["binding"] == "exact":
        rr, cc = torch.tensor(r), torch.tensor(c)
    else:
        rr, cc = torch.tensor(info["grid_point"]["r"]), torch.tensor(info["grid_point"]["c"])
    with torch.no_grad():
        parents = edge.architecture(rr, cc)
        ref = anchor.eval()(torch.from_numpy(x), parents, bn_deltas=weight(rr, cc))
    ref = ref if isinstance(ref, dict) else dict(zip(rt.task_names, ref))
    for k in rt.task_names:
        np.testing.assert_allclose(out[k], ref[k].numpy(), rtol=1e-3, atol=1e-3)


def test_engine_budget_counts_the_external_weights(real):
    _, bundle = real
    rt = Runtime.open(bundle)
    rt.set_preference([1, 0, 0], 0)
    tid = rt.stats()["topology"]
    topo = rt.manifest.to_dict()["topologies"][tid]
    graph_file = (bundle / topo["file"]).stat().st_size
    # Tensors live in graphs/weights.bin (the graph file alone is far too small), and the
    # engine reads them from the runtime's one shared copy: counted once, not twice.
    one = rt.cache.bytes()
    assert 4 * topo["params"] <= one < 2 * 4 * topo["params"] and one > 2 * graph_file
    # A second topology adds only the weights the first does not already hold (hold once).
    other = next(p for p in rt.manifest.points if p.topology != tid)
    rt.set_preference(other.r, other.c)
    params2 = rt.manifest.topologies[other.topology].params
    assert rt.cache.bytes() < one + 4 * params2
