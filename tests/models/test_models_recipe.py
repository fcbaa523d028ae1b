"""The BMTAS recipe's pieces: shared stem paid once, R-ASPP as last node, light decoder with
modulated BNs, PASCAL's non-affine BNs (folded and materialized exactly), and the
controllability measures computed from an edge hypernet."""

import dataclasses

import numpy as np
import pytest
import torch

from dymu_rt.compile.architecture import materialize
from dymu_rt.compile.fold_modules import fold_bn, fold_convbn
from dymu_rt.models.backbones import RASPP, BackboneSpec
from dymu_rt.models.cost import CostModel
from dymu_rt.models.heads import HeadSpec, LightDecoderHead
from dymu_rt.models.layers import ConvBN, ModulatedBatchNorm2d
from dymu_rt.models.presets import get_preset
from dymu_rt.core.tree import identity_table


@pytest.fixture(scope="module")
def tiny_pascal():
    """synth-pascal's recipe (MobileNetV2, non-affine last BNs) at 3 tasks, narrow, 32x32."""
    base = get_preset("synth-pascal")
    preset = dataclasses.replace(
        base, tasks=base.tasks[:3], input_size=(32, 32),
        backbone=BackboneSpec("mobilenetv2", 0, 0.25, 8, "imagenet", shared_stem=True,
                              raspp_channels=8, affine_last_bn=False),
        head=HeadSpec("light", 0, (), 8, 8))
    torch.manual_seed(0)
    net = preset.build()
    # Non-trivial BN statistics so that folding is actually exercised.
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_layout_stem_nodes_raspp_heads(tiny_pascal):
    net = tiny_pascal
    assert net.num_layers == 17 + 1                       # 17 inverted residuals + R-ASPP
    assert all(isinstance(net.streams[j][-1], RASPP) for j in range(net.num_tasks))
    assert all(isinstance(h, LightDecoderHead) for h in net.heads.values())
    # The skip is the second 24-channel (stride-4) block.
    assert net.low_level_layer == 2 and net.node_infos[2].stride == 4
    # Non-affine: the projection BN of every IR block and the R-ASPP projection.
    last = [m.block[-1].bn for m in net.streams[0][:-1]] + [net.streams[0][-1].project.bn]
    assert all(not bn.affine and not isinstance(bn, ModulatedBatchNorm2d) for bn in last)
    # Modulated: every affine BN of nodes and heads, never the stem.
    affine_bns = [m for name, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)
                  and m.affine and not name.startswith("stem")]
    assert all(isinstance(bn, ModulatedBatchNorm2d) for bn in affine_bns)
    assert sum(s.channels for s in net.bn_layout) == sum(bn.num_features for bn in affine_bns)


def test_shared_stem_runs_once_whatever_the_tree(tiny_pascal):
    calls = []
    h = tiny_pascal.stem.register_forward_hook(lambda *a: calls.append(1))
    try:
        tiny_pascal(torch.rand(1, 3, 32, 32))
    finally:
        h.remove()
    assert len(calls) == 1
    cm = CostModel(tiny_pascal)
    assert cm.full_cost().macs == cm.stem_macs + cm.node_macs.sum() + sum(cm.head_macs.values())


def test_non_affine_convbn_folds_exactly():
    unit = ConvBN(4, 6, 3, affine=False).eval()
    with torch.no_grad():
        unit.bn.running_mean.uniform_(-1, 1)
        unit.bn.running_var.uniform_(0.5, 2)
    x = torch.rand(2, 4, 8, 8)
    ref = unit(x)
    fold_convbn(unit)
    assert torch.allclose(unit(x), ref, atol=1e-5)


def test_materialize_equals_forward_with_non_affine_bns_and_head_deltas(tiny_pascal):
    rng = np.random.default_rng(1)
    L, N = tiny_pascal.num_layers, tiny_pascal.num_tasks
    x = torch.rand(2, 3, 32, 32)
    for i in range(4):
        p = rng.integers(0, N, size=(L, N))
        p[0] = np.arange(N)
        d = torch.from_numpy(rng.normal(0, 0.3, tiny_pascal.bn_delta_size).astype(np.float32))
        with torch.no_grad():
            ref = tiny_pascal(x, p, d)
            tree = materialize(tiny_pascal, p, d)
            if i % 2:
                fold_bn(tree)
            out = tree(x)
        assert hasattr(tree, "stem")
        for name, o in zip(tiny_pascal.task_names, out):
            assert (o - ref[name]).abs().max().item() <= 1e-4 * max(1.0, ref[name].abs().max().item())


class _FakeEdge:
    """An edge hypernet stand-in: identity tree below ``c < cut``, hard sharing above."""

    def __init__(self, L, N, cut, decreasing=True):
        self.L, self.N, self.cut, self.decreasing = L, N, cut, decreasing

    def architecture(self, r, c):
        p = identity_table(self.L, self.N)
        share = float(c) >= self.cut if self.decreasing else float(c) < self.cut
        if share:
            p[1:-1] = 0
        return p


def test_controllability_measures(tiny_preset):
    from dymu_rt.evaluate.controllability import controllability

    tiny_anchor = tiny_preset.build().eval()
    L, N = tiny_anchor.num_layers, tiny_anchor.num_tasks
    cost = CostModel(tiny_anchor)
    full = cost.full_cost().macs
    good = controllability(tiny_anchor, _FakeEdge(L, N, 0.5), cost, step=0.5, c_step=0.25, n_dir=20)
    assert good["monotone_share"] == 1.0
    assert good["range"]["max_over_min"] > 1.5 and good["range"]["max_gmacs"] * 1e9 == full
    assert good["c_ratio"]["gmacs"] == pytest.approx(good["range"]["min_gmacs"] / good["range"]["max_gmacs"])
    bad = controllability(tiny_anchor, _FakeEdge(L, N, 0.5, decreasing=False), cost, step=0.5, c_step=0.25, n_dir=20)
    assert bad["monotone_share"] == 0.0 and bad["c_ratio"]["gmacs"] > 1


def test_controllability_samples_r_uniformly_with_the_multi_active_split(tiny_preset):
    """The paper's protocol (issue 22): r ~ Dir(1) by default; under Dir(1) most r of 3 tasks
    have >= 2 active tasks (r_i >= 0.2), under the training law Dir(0.2) most have one."""
    from dymu_rt.core.preference import n_active
    from dymu_rt.evaluate.controllability import controllability

    tiny_anchor = tiny_preset.build().eval()
    L, N = tiny_anchor.num_layers, tiny_anchor.num_tasks
    cost = CostModel(tiny_anchor)
    uni = controllability(tiny_anchor, _FakeEdge(L, N, 0.5), cost, step=0.5, c_step=0.5, n_dir=200)
    dir02 = controllability(tiny_anchor, _FakeEdge(L, N, 0.5), cost, step=0.5, c_step=0.5, n_dir=200, eta=0.2)
    assert uni["r_law"] == "Dir(1)" and dir02["r_law"] == "Dir(0.2)"
    assert uni["multi_active_share"] > 0.6 > 0.4 > dir02["multi_active_share"]
    assert uni["c_ratio_multi_active"] == pytest.approx(uni["c_ratio"]["gmacs"])   # this fake ignores r
    assert n_active((0.5, 0.3, 0.2), 3) == 3 and n_active((0.9, 0.05, 0.05), 3) == 1
