"""tree_from_logits: the edge hypernet's argmax tree, shared by the Runtime and the Triton router."""

import numpy as np
import pytest

from dymu_rt.core.tree import DEAD, canonicalize, tree_from_logits


def test_argmax_parent_per_node_canonical():
    L, N = 4, 3
    logits = np.zeros((L - 1, N, N), np.float32)
    for l in range(L - 1):
        logits[l, :, 0] = 1.0          # every node picks stream 0: only stream 0 survives below the top
    logits[-1, 2, 2] = 5.0             # ... except top node 2, which keeps stream 2 at layer L-2
    t = tree_from_logits(logits, L, N)
    assert t.shape == (L, N) and (t == canonicalize(t)).all()
    assert list(t[-1]) == [0, 0, 2]
    assert t[1, 1] == DEAD


def test_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"expected \(3, 3, 3\)"):
        tree_from_logits(np.zeros((2, 3, 3)), 4, 3)
