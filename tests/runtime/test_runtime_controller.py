"""The runtime's controller (ONNX hypernets on ONNX Runtime, no torch) gives what the trained
torch hypernets give: the same tree and the same BN deltas (within 1e-5), at preferences on
and off any grid."""

import numpy as np
import pytest
import torch

from dymu_rt.compile.export import export_hypernet
from dymu_rt.control.hypernets import EdgeHypernet, WeightHypernet
from dymu_rt.core.tree import topology_id
from dymu_rt.runtime.controller import Controller

N, L, D = 3, 6, 40
PREFS = [([1.0, 0.0, 0.0], 0.0), ([0.2, 0.3, 0.5], 0.9), ([0.61, 0.17, 0.22], 0.37), ([0.0, 0.0, 1.0], 1.0)]


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    torch.manual_seed(0)
    edge, weight = EdgeHypernet(N, L).eval(), WeightHypernet(N, D).eval()
    d = tmp_path_factory.mktemp("ctrl")
    export_hypernet(edge, N, d / "edge.onnx", "logits")
    export_hypernet(weight, N, d / "weight.onnx", "deltas")
    return edge, weight, Controller(d / "edge.onnx", d / "weight.onnx", L, N, D, salt="s")


@pytest.mark.parametrize("r, c", PREFS)
def test_runtime_controller_matches_torch_hypernets(nets, r, c):
    edge, weight, ctrl = nets
    with torch.no_grad():
        want_deltas = weight(torch.tensor(r), torch.tensor(c)).numpy()
        want_logits = edge(torch.tensor(r), torch.tensor(c)).numpy()
    got = ctrl.deltas(r, c)
    assert got.shape == (D,)
    np.testing.assert_allclose(got, want_deltas, rtol=0, atol=1e-5)
    want_tree = edge.architecture(r, c)
    assert np.array_equal(ctrl.tree(r, c), want_tree)
    assert ctrl.topology(r, c)[0] == topology_id(want_tree, "s")
    # the logits themselves agree too (the tree is their argmax: a near-tie would hide a drift)
    got_logits = ctrl.logits(r, c)
    np.testing.assert_allclose(got_logits, want_logits, rtol=0, atol=1e-5)
