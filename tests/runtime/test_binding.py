"""runtime/binding.py: a topology binds exactly its own slots; a slot the layout lacks is one
BundleError naming the fix; the vectorized affine plan is bitwise the formula. < 1 s."""

from __future__ import annotations

import numpy as np
import pytest

from dymu_rt.core.errors import BundleError
from dymu_rt.runtime import binding


def _params():
    rng = np.random.default_rng(0)
    p = {}
    for name in ("a.c", "b.c"):
        p.update({f"{name}.weight": rng.standard_normal((2, 1, 1, 1)).astype(np.float32),
                  f"{name}.bn_weight": np.ones(2, np.float32), f"{name}.bn_bias": np.zeros(2, np.float32),
                  f"{name}.bn_mean": np.zeros(2, np.float32), f"{name}.bn_var": np.ones(2, np.float32)})
    return p, [{"name": "a.c", "channels": 2, "offset": 0}, {"name": "b.c", "channels": 2, "offset": 4}]


@pytest.mark.parametrize("kind, keys", [("folded", {"b.c.conv.weight", "b.c.conv.bias"}),
                                        ("affine", {"b.c.scale", "b.c.shift"})])
def test_only_the_topologys_slots_are_bound(kind, keys):
    params, layout = _params()
    out = binding.slot_weights(params, layout, np.zeros(8, np.float32), 1e-5, ["b.c"], kind)
    assert set(out) == keys
    assert set(binding.raw_weights(params, ["a.c"])) == {"a.c.weight"}


def test_a_slot_missing_from_the_layout_is_one_bundle_error():
    params, layout = _params()
    with pytest.raises(BundleError, match=r"^topology names BN slots that bn_layout lacks \(.*'z\.c'.*\); "
                                          r"rebuild the bundle$"):
        binding.slot_weights(params, layout, np.zeros(8, np.float32), 1e-5, ["z.c"], "folded")


def _random_params(seed: int = 1):
    """Three slots with conv bias on one, random BN statistics, slots out of layout order."""
    rng = np.random.default_rng(seed)
    p, layout, off = {}, [], 0
    for name, c, bias in (("a.c", 3, False), ("b.c", 5, True), ("c.c", 4, False)):
        p.update({f"{name}.weight": rng.standard_normal((c, 2, 3, 3)).astype(np.float32),
                  f"{name}.bn_weight": rng.standard_normal(c).astype(np.float32),
                  f"{name}.bn_bias": rng.standard_normal(c).astype(np.float32),
                  f"{name}.bn_mean": rng.standard_normal(c).astype(np.float32),
                  f"{name}.bn_var": rng.random(c).astype(np.float32) + 0.1})
        if bias:
            p[f"{name}.conv_bias"] = rng.standard_normal(c).astype(np.float32)
        layout.append({"name": name, "channels": c, "offset": off})
        off += 2 * c
    return p, layout, off


def test_affine_plan_is_bitwise_slot_weights_and_returns_fresh_arrays():
    params, layout, size = _random_params()
    plan = binding.affine_plan(params, layout, 1e-5, ["c.c", "a.c", "b.c"])
    rng = np.random.default_rng(2)
    d1, d2 = (rng.standard_normal(size).astype(np.float32) for _ in range(2))
    ref1 = binding.slot_weights(params, layout, d1, 1e-5, ["c.c", "a.c", "b.c"], "affine")
    got1 = plan(d1)
    assert set(got1) == set(ref1)
    for k in ref1:
        assert got1[k].dtype == np.float32 and got1[k].shape == ref1[k].shape
        assert np.array_equal(got1[k], ref1[k]), k           # same float32 ops in the same order
    got2 = plan(d2)                                           # a later call leaves the first binding alone
    assert all(np.array_equal(got1[k], ref1[k]) for k in ref1)
    ref2 = binding.slot_weights(params, layout, d2, 1e-5, ["c.c", "a.c", "b.c"], "affine")
    assert all(np.array_equal(got2[k], ref2[k]) for k in ref2)
    assert not np.array_equal(got2["b.c.shift"], got1["b.c.shift"])


def test_affine_plan_refuses_a_slot_missing_from_the_layout():
    params, layout, _ = _random_params()
    with pytest.raises(BundleError, match=r"^topology names BN slots that bn_layout lacks .*'z\.c'"):
        binding.affine_plan(params, layout, 1e-5, ["a.c", "z.c"])
