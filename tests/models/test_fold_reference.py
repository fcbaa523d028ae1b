"""The BN-folding formula against references it does not compute itself (issue 28).

* :func:`fold_conv_bn_tensors` against torch's own ``Conv2d`` + ``BatchNorm2d`` forward in
  eval mode (running statistics), with a large ε and small variances so that dropping ε or
  the square root changes the output by far more than the tolerance;
* :func:`slot_weights` (what a runtime binds) and the weight pool's anchor scale against
  ``γ / √(var + ε)`` written out here, element by element.

Cost: < 1 s.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from dymu_rt.bundle.weight_pool import anchor_scale
from dymu_rt.core.bn_fold import fold_conv_bn_tensors, slot_weights

EPS = 0.25          # large on purpose: a fold that drops ε is off by ~10 % here


def _torch_pair(seed: int, conv_bias: bool, eps: float = EPS):
    g = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=conv_bias)
    bn = nn.BatchNorm2d(5, eps=eps).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
        if conv_bias:
            conv.bias.copy_(torch.randn(5, generator=g))
        bn.running_mean.copy_(torch.randn(5, generator=g))
        bn.running_var.copy_(torch.rand(5, generator=g) * 0.3 + 0.05)     # far from 1: √ matters
        bn.weight.copy_(torch.rand(5, generator=g) * 2 - 1)                  # negative γ too
        bn.bias.copy_(torch.randn(5, generator=g))
    return conv, bn, torch.randn(2, 3, 7, 7, generator=g)


@pytest.mark.parametrize("conv_bias", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_fold_equals_torch_batchnorm_forward(seed, conv_bias):
    conv, bn, x = _torch_pair(seed, conv_bias)
    with torch.no_grad():
        ref = bn(conv(x))                                    # torch's BN, not ours
        w, b = fold_conv_bn_tensors(conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean,
                                    bn.running_var, bn.eps)
        out = torch.nn.functional.conv2d(x, w, b, padding=1)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_fold_with_deltas_equals_torch_batchnorm_with_shifted_affine():
    conv, bn, x = _torch_pair(2, False)
    g = torch.Generator().manual_seed(7)
    dg, db = torch.randn(5, generator=g) * 0.5, torch.randn(5, generator=g) * 0.5
    shifted = nn.BatchNorm2d(5, eps=EPS).eval()
    shifted.load_state_dict(bn.state_dict())
    with torch.no_grad():
        shifted.weight.add_(dg)
        shifted.bias.add_(db)
        ref = shifted(conv(x))
        w, b = fold_conv_bn_tensors(conv.weight, None, bn.weight, bn.bias, bn.running_mean, bn.running_var,
                                    bn.eps, dg, db)
        out = torch.nn.functional.conv2d(x, w, b, padding=1)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def _written_out(params, name, d, c, o, eps):
    """(W', b') of one slot, element by element: s_k = (γ_k + Δγ_k) / √(var_k + ε)."""
    w = params[f"{name}.weight"]
    w2 = np.empty_like(w)
    b2 = np.empty(c, np.float64)
    for k in range(c):
        s = (float(params[f"{name}.bn_weight"][k]) + float(d[o + k])) / math.sqrt(float(params[f"{name}.bn_var"][k]) + eps)
        w2[k] = w[k] * s
        b2[k] = float(params[f"{name}.bn_bias"][k]) + float(d[o + c + k]) + \
            (float(params.get(f"{name}.conv_bias", np.zeros(c))[k]) - float(params[f"{name}.bn_mean"][k])) * s
    return w2, b2


def _params(rng, name, c, bias):
    p = {f"{name}.weight": rng.standard_normal((c, 2, 3, 3)).astype(np.float32),
         f"{name}.bn_weight": (rng.random(c) * 2 - 1).astype(np.float32),
         f"{name}.bn_bias": rng.standard_normal(c).astype(np.float32),
         f"{name}.bn_mean": rng.standard_normal(c).astype(np.float32),
         f"{name}.bn_var": (rng.random(c) * 0.3 + 0.05).astype(np.float32)}
    if bias:
        p[f"{name}.conv_bias"] = rng.standard_normal(c).astype(np.float32)
    return p


@pytest.mark.parametrize("kind", ["folded", "affine"])
def test_slot_weights_equal_the_formula_written_out(kind):
    rng = np.random.default_rng(3)
    params = {**_params(rng, "a.conv1", 4, False), **_params(rng, "b.conv2", 3, True)}
    # Layout as a bundle stores it: Δγ at offset, Δβ right after; slot b after slot a.
    layout = [{"name": "a.conv1", "channels": 4, "offset": 0}, {"name": "b.conv2", "channels": 3, "offset": 8}]
    d = rng.normal(0, 0.3, 14).astype(np.float32)
    out = slot_weights(params, layout, d, EPS, kind=kind)
    for s in layout:
        name, c, o = s["name"], s["channels"], s["offset"]
        w2, b2 = _written_out(params, name, d, c, o, EPS)
        if kind == "folded":
            np.testing.assert_allclose(out[f"{name}.conv.weight"], w2, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(out[f"{name}.conv.bias"], b2, rtol=1e-5, atol=1e-5)
        else:
            scale = w2[:, 0, 0, 0] / params[f"{name}.weight"][:, 0, 0, 0]
            np.testing.assert_allclose(out[f"{name}.scale"], scale, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(out[f"{name}.shift"], b2, rtol=1e-5, atol=1e-5)
    # Only the named slots, in the same values.
    only = slot_weights(params, layout, d, EPS, slots=["b.conv2"], kind=kind)
    assert {k.split(".")[0] for k in only} == {"b"}


def test_weight_pool_anchor_scale_is_gamma_over_sqrt_var_plus_eps():
    gamma = np.array([1.0, -0.5, 2.0, 0.1], np.float32)
    var = np.array([0.04, 0.25, 1.0, 3.0], np.float32)
    fold = {"s.bn_weight": gamma, "s.bn_var": var}
    want = [1.0 / math.sqrt(0.04 + EPS), -0.5 / math.sqrt(0.25 + EPS), 2.0 / math.sqrt(1.0 + EPS),
            0.1 / math.sqrt(3.0 + EPS)]
    np.testing.assert_allclose(anchor_scale(fold, "s", EPS), want, rtol=1e-6)


def test_slot_weights_contract_dtype_shape_and_errors():
    rng = np.random.default_rng(4)
    params = {k: v.astype(np.float64) for k, v in _params(rng, "a.conv1", 4, True).items()}
    layout = [{"name": "a.conv1", "channels": 4, "offset": 0}]
    d = rng.normal(0, 0.3, 8)
    out = slot_weights(params, layout, d[None, :], EPS)            # deltas as a row [1, D]: flattened
    flat = slot_weights(params, layout, d, EPS)
    for k in out:
        assert out[k].dtype == np.float32 and out[k].flags.c_contiguous, k
        np.testing.assert_array_equal(out[k], flat[k])
    with pytest.raises(ValueError, match=r"^weight kind 'bogus'; expected one of \('folded', 'affine'\)$"):
        slot_weights(params, layout, d, EPS, kind="bogus")
    with pytest.raises(KeyError, match=r"slots \['n1', 'n2', 'n3'\] are not in bn_layout"):
        slot_weights(params, layout, d, EPS, slots=["n4", "n3", "n2", "n1"])
