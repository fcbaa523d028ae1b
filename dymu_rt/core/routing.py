"""What the Triton router decides for one preference, in numpy alone.

The router (``dymu_rt/serve/triton/router/model.py``, Triton's Python backend) runs where
dymu-rt is not installed, so the export copies this file unchanged into the router's version
folder together with the core files it imports (:mod:`dymu_rt.serve.triton.vendor`): the
preference rules (:mod:`dymu_rt.core.preference`, the same ones the CLI and the Runtime
apply), the tree rules (:mod:`dymu_rt.core.tree`) and a numpy safetensors reader. Imports
here must stay within those modules (relative), the standard library and numpy (a test walks
the imports).

The decision is the Runtime's, made by the same code (:mod:`dymu_rt.core.selector`): the edge
hypernet's exact tree for (r, c) if the repository has a model for that topology, bound
with the weight hypernet's deltas at (r, c) (``binding = "exact"``); otherwise the nearest
grid point's topology, bound with the deltas at that grid point (``"nearest-grid"``).

BN scale/shift from deltas: the binding formula (docs/INTERFACES.md) is affine in the
deltas, s = (γ+Δγ)/σ and b' = (β+Δβ) + (b−μ)·s, so per channel
``scale = s0 + k·Δγ`` and ``shift = h0 + Δβ + m·Δγ``. The export computes s0, k, h0, m with
the one implementation of the formula (:func:`dymu_rt.runtime.binding.slot_weights`) and
stores them in ``bn_affine.safetensors``; the router only evaluates these two lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .preference import Preference, make_preference
from .selector import Selection, Selector
from .errors import ValidationError
from .tree import topology_id, tree_from_logits
from .safetensors_np import load as load_safetensors

#: files of the router's version folder written by the export
SPEC_FILE = "router.json"
BN_FILE = "bn_affine.safetensors"
SPEC_KIND = "dymu-rt-triton-router"
#: the router's fixed (non-task) outputs
INFO_OUTPUTS = ("topology", "binding", "grid_point", "gmacs", "params")
#: router inputs
INPUTS = ("image", "r", "c")


#: which topology model runs a preference, and whose BN deltas it binds (the selector's answer)
Decision = Selection


class RouterSpec:
    """The router's view of a bundle: tasks, topologies, grid points and BN coefficients."""

    def __init__(self, spec: Mapping, bn: Mapping[str, np.ndarray]) -> None:
        if spec.get("kind") != SPEC_KIND:
            raise ValueError(f"router spec kind {spec.get('kind')!r}; expected {SPEC_KIND!r}")
        self.spec = spec
        self.n_tasks = int(spec["n_tasks"])
        self.num_layers = int(spec["num_layers"])
        self.salt = str(spec["topology_salt"])
        self.tasks = [t["name"] for t in spec["tasks"]]
        self.input_size = tuple(int(v) for v in spec["input_size"])
        self.topologies: dict = spec["topologies"]
        self.models: dict = spec["models"]
        self.points = [Preference(tuple(float(v) for v in p["r"]), float(p["c"])) for p in spec["points"]]
        self.point_topology = [p["topology"] for p in spec["points"]]
        self.bn = bn
        self.selector = Selector(self.topologies, self.points, self.point_topology)

    @classmethod
    def load(cls, folder) -> "RouterSpec":
        """Read ``router.json`` and ``bn_affine.safetensors`` from a router version folder."""
        folder = Path(folder)
        return cls(json.loads((folder / SPEC_FILE).read_text()), load_safetensors(folder / BN_FILE))

    # -- requests ----------------------------------------------------------------------------

    def preferences(self, r: np.ndarray, c: np.ndarray) -> list[Preference]:
        """One validated preference per request row: ``r`` [B, N], ``c`` [B, 1].

        Raises ValidationError (the CLI's message) for the first bad row.
        """
        r = np.asarray(r)
        c = np.asarray(c)
        if r.ndim != 2 or r.shape[1] != self.n_tasks:
            raise ValidationError(f"input 'r' has shape {list(r.shape)}; expected [batch, {self.n_tasks}] "
                                  f"(one task preference of {self.n_tasks} values per image)")
        if c.shape != (r.shape[0], 1):
            raise ValidationError(f"input 'c' has shape {list(c.shape)}; expected [{r.shape[0]}, 1] "
                                  "(one resource preference per image)")
        out = []
        for i in range(r.shape[0]):
            try:
                out.append(make_preference([float(v) for v in r[i]], float(c[i, 0]), self.n_tasks))
            except ValidationError as e:
                raise ValidationError(f"row {i}: {e}") from None
        return out

    def check_images(self, image: np.ndarray, rows: int) -> None:
        """Refuse images that are not ``[rows, 3, H, W]`` float32."""
        h, w = self.input_size
        if image.dtype != np.float32 or image.shape != (rows, 3, h, w):
            raise ValidationError(f"input 'image' is {image.dtype} {list(image.shape)}; expected float32 "
                                  f"[{rows}, 3, {h}, {w}] (preprocessed, values in [0, 1])")

    # -- decisions ---------------------------------------------------------------------------

    def decide(self, pref: Preference, edge_logits: np.ndarray) -> Decision:
        """The Runtime's choice for ``pref`` given the edge hypernet's logits at ``pref``."""
        tid = topology_id(tree_from_logits(edge_logits, self.num_layers, self.n_tasks), self.salt)
        return self.selector.select(pref, tid)

    def affine_inputs(self, topology: str, deltas: np.ndarray) -> dict[str, np.ndarray]:
        """The topology model's BN inputs for one image: ``<slot>.scale`` / ``<slot>.shift``
        [C, 1, 1] from the weight hypernet's deltas [D] (see the module docstring)."""
        d = np.asarray(deltas, np.float32).reshape(-1)
        out = {}
        for slot in self.topologies[topology]["slots"]:
            offset, channels = self.spec["bn_layout"][slot]
            d_gamma, d_beta = d[offset:offset + channels], d[offset + channels:offset + 2 * channels]
            scale = self.bn[f"{slot}.s0"] + self.bn[f"{slot}.k"] * d_gamma
            shift = self.bn[f"{slot}.h0"] + d_beta + self.bn[f"{slot}.m"] * d_gamma
            out[f"{slot}.scale"] = scale.astype(np.float32).reshape(channels, 1, 1)
            out[f"{slot}.shift"] = shift.astype(np.float32).reshape(channels, 1, 1)
        return out

    def grid_point_row(self, decision: Decision) -> np.ndarray:
        """``grid_point`` output [N + 1]: (r, c) whose weights were bound."""
        p = decision.weights_at
        return np.asarray([*p.r, p.c], np.float32)


def hypernet_feeds(pref: Preference) -> dict[str, np.ndarray]:
    """Inputs of both hypernet models for one preference (``r`` [1, N], ``c`` [1, 1])."""
    return {"r": np.asarray(pref.r, np.float32).reshape(1, -1), "c": np.asarray([[pref.c]], np.float32)}


def group_rows(decisions: Sequence[Decision], max_batch: int) -> list[tuple[str, list[int]]]:
    """Row indices grouped by topology (first-seen order), in chunks of at most ``max_batch``:
    one topology-model call per chunk, whatever preferences its rows carry."""
    by_topology: dict[str, list[int]] = {}
    for i, d in enumerate(decisions):
        by_topology.setdefault(d.topology, []).append(i)
    step = max(1, int(max_batch))
    return [(t, rows[j:j + step]) for t, rows in by_topology.items() for j in range(0, len(rows), step)]
