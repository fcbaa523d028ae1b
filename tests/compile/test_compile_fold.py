"""BN folding: one pass over ConvBNs, equal outputs for plain and modulated BNs."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from dymu_rt.compile.fold_modules import fold_bn, fold_params
from dymu_rt.core.bn_fold import fold_conv_bn_tensors, slot_weights
from dymu_rt.models.layers import ConvBN, ModulatedBatchNorm2d, modulate
from run_fixture import randomize_bn


def _net(g):
    net = nn.Sequential(ConvBN(3, 8, 3, stride=2), nn.ReLU(), ConvBN(8, 8, 3, groups=8),
                        ConvBN(8, 6, 1, modulated=False)).eval()
    randomize_bn(net, g)
    return net


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fold_plain_equals_unfolded(seed):
    g = torch.Generator().manual_seed(seed)
    net = _net(g)
    x = torch.randn(2, 3, 16, 16, generator=g)
    ref = net(x)
    fold_bn(net)
    assert all(isinstance(m.bn, nn.Identity) for m in net.modules() if isinstance(m, ConvBN))
    assert all(m.conv.bias is not None for m in net.modules() if isinstance(m, ConvBN))
    torch.testing.assert_close(net(x), ref, atol=1e-5, rtol=1e-5)


def test_fold_with_deltas_equals_modulated_forward():
    g = torch.Generator().manual_seed(3)
    net = _net(g)
    x = torch.randn(2, 3, 16, 16, generator=g)
    deltas = {"0": (torch.randn(8, generator=g) * 0.3, torch.randn(8, generator=g) * 0.3),
              "2": (torch.randn(8, generator=g) * 0.3, torch.randn(8, generator=g) * 0.3)}
    with modulate([net[0].bn, net[2].bn], [deltas["0"], deltas["2"]]):
        ref = net(x)
    plain = net(x)
    assert (ref - plain).abs().max() > 1e-3          # the deltas matter
    fold_bn(net, deltas)
    torch.testing.assert_close(net(x), ref, atol=1e-5, rtol=1e-5)


def test_fold_refuses_training_mode_and_unknown_names():
    net = _net(torch.Generator().manual_seed(0)).train()
    with pytest.raises(ValueError, match="eval"):
        fold_bn(net)
    with pytest.raises(KeyError):
        fold_bn(net.eval(), {"no.such": (torch.zeros(8), torch.zeros(8))})


def test_numpy_formula_and_binding_match_torch(tiny_anchor):
    """slot_weights (the runtime's formula on fold_params) equals folding the module."""
    params = {k: v.numpy() for k, v in fold_params(tiny_anchor).items()}
    layout = [{"name": s.name, "channels": s.channels, "offset": s.offset} for s in tiny_anchor.bn_layout]
    d = np.random.default_rng(0).normal(0, 0.2, tiny_anchor.bn_delta_size).astype(np.float32)
    bound = slot_weights(params, layout, d, 1e-5)
    assert len(bound) == 2 * len(layout)
    s = tiny_anchor.bn_layout[5]
    unit = tiny_anchor.node_module(s.layer, s.stream).get_submodule(s.name.split(".", 1)[1])
    dt = torch.from_numpy(d)
    w, b = fold_conv_bn_tensors(unit.conv.weight, None, unit.bn.weight, unit.bn.bias, unit.bn.running_mean,
                                unit.bn.running_var, unit.bn.eps, dt[s.offset:s.offset + s.channels],
                                dt[s.offset + s.channels:s.offset + 2 * s.channels])
    np.testing.assert_allclose(bound[f"{s.name}.conv.weight"], w.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bound[f"{s.name}.conv.bias"], b.detach().numpy(), rtol=1e-5, atol=1e-6)
    only = slot_weights(params, layout, d, 1e-5, slots=[s.name])
    assert set(only) == {f"{s.name}.conv.weight", f"{s.name}.conv.bias"}
