"""runtime/binding.py: a topology binds exactly its own slots; a slot the layout lacks is one
BundleError naming the fix. < 1 s."""

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
