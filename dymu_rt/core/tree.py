"""Parent tables: validation, dead-node pruning, canonical form, ancestors.

A parent table is an int array of shape (L, N): ``parents[l, j] = k`` means node (l, j)
reads node (l-1, k); row 0 is the first per-task node (node (0, j) reads the shared stem's
output, or the image when the streams have their own stem; ``parents[0, j] == j``).
Task head j reads node (L-1, j). See docs/INTERFACES.md.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from .errors import ValidationError

DEAD = -1


def identity_table(num_layers: int, num_tasks: int) -> np.ndarray:
    """The full N-stream single-task net: every node reads its own stream."""
    return np.tile(np.arange(num_tasks, dtype=np.int64), (num_layers, 1))


def validate_parents(parents, num_layers: int, num_tasks: int, head_streams=None) -> np.ndarray:
    """Return ``parents`` as an int64 (L, N) array, or raise a ValidationError.

    Dead entries (-1) are accepted anywhere except on a node a task reaches
    (``head_streams``: see :func:`used_nodes`).
    """
    p = np.asarray(parents)
    if p.shape != (num_layers, num_tasks):
        raise ValidationError(
            f"parent table has shape {tuple(p.shape)}, expected ({num_layers}, {num_tasks})"
        )
    if not np.issubdtype(p.dtype, np.integer):
        if not np.all(np.equal(np.mod(p, 1), 0)):
            raise ValidationError("parent table must hold integers")
    p = p.astype(np.int64)
    if np.any((p < DEAD) | (p >= num_tasks)):
        raise ValidationError(f"parent table entries must be in [-1, {num_tasks}), got {p.tolist()}")
    used = used_nodes(p, head_streams)
    if np.any(p[used] == DEAD):
        raise ValidationError("a node reached by a task has no parent (-1)")
    stem = p[0]
    if np.any((stem != np.arange(num_tasks)) & used[0]):
        raise ValidationError(f"row 0 (stem) must be the identity, got {stem.tolist()}")
    return p


def used_nodes(parents: np.ndarray, head_streams=None) -> np.ndarray:
    """Bool (L, N): True where a node is on some task's path (i.e. alive).

    Task heads read the top nodes ``head_streams`` (default: head j reads (L-1, j); only the
    PHN baseline's fully shared encoder reads one top node for all heads).
    """
    p = np.asarray(parents)
    L, N = p.shape
    used = np.zeros((L, N), dtype=bool)
    if head_streams is None:
        used[L - 1, :] = True
    else:
        hs = np.asarray(head_streams, dtype=np.int64)
        if hs.shape != (N,) or np.any((hs < 0) | (hs >= N)):
            raise ValidationError(f"head_streams must be {N} stream indices, got {hs.tolist()}")
        used[L - 1, hs] = True
    for l in range(L - 1, 0, -1):
        for j in range(N):
            if used[l, j] and p[l, j] >= 0:
                used[l - 1, p[l, j]] = True
    return used


def canonicalize(parents) -> np.ndarray:
    """Canonical form: dead entries set to -1, stem row the identity where alive.

    Two tables describe the same tree exactly when their canonical forms are equal.
    """
    p = np.array(parents, dtype=np.int64, copy=True)
    p[0] = np.arange(p.shape[1])
    used = used_nodes(p)
    p[~used] = DEAD
    return p


def tree_from_logits(logits, num_layers: int, num_tasks: int) -> np.ndarray:
    """Canonical parent table (L, N) of the maximum-likelihood tree for edge-hypernet logits.

    ``logits`` [L-1, N, N]: head ``l-1`` gives row ``l`` (row j = parent distribution of node
    j); the argmax parent per node is the tree the paper runs at inference. Raises ValueError
    for logits of another shape.
    """
    logits = np.asarray(logits)
    L, N = int(num_layers), int(num_tasks)
    if logits.shape != (L - 1, N, N):
        raise ValueError(f"edge hypernet logits have shape {tuple(logits.shape)}, expected {(L - 1, N, N)}")
    table = np.empty((L, N), np.int64)
    table[0] = np.arange(N)                      # row 0: the stem reads the image
    table[1:] = logits.argmax(-1)
    return canonicalize(table)


def topology_id(parents, salt: str = "") -> str:
    """Stable id of a tree: sha256 of its canonical table (and an optional model salt)."""
    canon = canonicalize(parents)
    blob = json.dumps({"parents": canon.tolist(), "salt": salt}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def ancestor(parents: np.ndarray, task: int, layer: int) -> int:
    """Stream of the node at ``layer`` on task ``task``'s path from the head down."""
    p = np.asarray(parents)
    L = p.shape[0]
    j = task
    for l in range(L - 1, layer, -1):
        j = int(p[l, j])
    return j


def count_cross_task_edges(parents: np.ndarray) -> int:
    """Number of alive nodes whose parent is in another stream."""
    p = canonicalize(parents)
    L, N = p.shape
    return int(sum(1 for l in range(1, L) for j in range(N) if p[l, j] >= 0 and p[l, j] != j))


def num_used_nodes(parents: np.ndarray) -> int:
    """How many nodes run for this tree."""
    return int(used_nodes(np.asarray(parents)).sum())
