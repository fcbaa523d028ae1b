"""Edge maps derived from label maps (the PASCAL "edges" task).

ASTMT / Vandenhende et al. take the PASCAL-Context label map, mark pixels where its
Laplacian is non-zero and thin the result to 1 px. We use the one-sided equivalent,
which needs no morphology and is exactly 1 px wide: a pixel is an edge when its label
differs from its right or lower neighbour. The procedural scenes apply the same rule to
their instance map, so rendered edges and edges read back from disk agree.
"""

from __future__ import annotations

import numpy as np


def label_edges(labels: np.ndarray) -> np.ndarray:
    """Float32 {0, 1} map of the boundaries of an integer label map (H, W), 1 px wide."""
    labels = np.asarray(labels)
    e = np.zeros(labels.shape, dtype=bool)
    e[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    e[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return e.astype(np.float32)
