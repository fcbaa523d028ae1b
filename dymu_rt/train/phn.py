"""The PHN-BN baseline: a shared backbone whose BN parameters come from a hypernet of r.

Pareto HyperNetworks (Navon et al., 2021) restricted to BatchNorm, as compared against in
the paper. Our instantiation: the anchor's tree in which every task reads stream 0 below
the top layer (a hard-shared backbone; each task keeps its own top node and head, the
same granularity as our search space), initialized from the anchor, with BNs modulated by
a weight hypernet of (r, c=0). Backbone, heads and hypernet are trained jointly on
Σ r_i w_i L_i with r ~ Dir(0.2). The model's cost does not depend on the preference.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from dymu_rt.models.tree import identity_table
from dymu_rt.train.checkpoint import RunDir, load_module, save_module
from dymu_rt.train.common import (JsonlLog, check_positive, infinite_batches, make_split, make_tasks,
                                  seed_everything, set_lr, step_decay_lr, validate_train_config,
                                  weighted_task_loss)
from dymu_rt.control.hypernets import WeightHypernet
from dymu_rt.control.preference import sample_preferences
from dymu_rt.utils.progress import make_progress


def shared_tree(num_layers: int, num_tasks: int) -> np.ndarray:
    """Every task reads stream 0 up to the top layer (hard sharing)."""
    p = identity_table(num_layers, num_tasks)
    p[1:-1] = 0
    p[-1] = 0
    return p


class PHNBN(torch.nn.Module):
    """Anchor-structured net on the shared tree + a BN weight hypernet of (r, 0)."""
    def __init__(self, anchor) -> None:

        super().__init__()
        self.net = anchor
        self.hyper = WeightHypernet(anchor.num_tasks, anchor.bn_delta_size)
        self.parents = shared_tree(anchor.num_layers, anchor.num_tasks)

    def forward(self, x: torch.Tensor, r: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: D102
        return self.net(x, self.parents, self.hyper(r, torch.zeros(())))


def train_phn_bn(run: RunDir, data: str = "synth", seed: int = 0, n_train: Optional[int] = None,
                 progress: bool = True) -> dict:
    """Train the PHN-BN baseline of ``run`` (saved as phn_bn.safetensors)."""
    if run.stage_done("phn-bn"):
        return run.read_config()["stages"]["phn-bn"]
    preset = run.preset()
    cfg = preset.train
    check_positive(n_train, "--n-train")
    validate_train_config(cfg)
    seed_everything(seed + 33)
    anchor = run.load_anchor()
    for p in anchor.parameters():
        p.requires_grad_(True)
    model = PHNBN(anchor)
    model.net.eval()   # BN statistics stay the anchor's; only affine parameters are learned
    tasks = make_tasks(preset)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.controller_lr)
    rng = np.random.default_rng(seed + 3)
    steps = cfg.phn_steps or cfg.weight_steps
    batches = infinite_batches(make_split(preset, data, "train", n=n_train, augment=True, seed=seed),
                               cfg.controller_batch, seed + 3)
    log = JsonlLog(run.path / "logs" / "phn-bn.jsonl")
    with make_progress(disable=not progress) as bar:
        job = bar.add_task("baseline: PHN-BN", total=steps, info="")
        for step in range(steps):
            set_lr(opt, step_decay_lr(cfg.controller_lr, step, cfg.decay_every, cfg.decay_gamma))
            r = torch.tensor(sample_preferences(len(tasks), 1, rng)[0].r, dtype=torch.float32)
            batch = next(batches)
            loss, _ = weighted_task_loss(tasks, model(batch["image"], r), batch, r)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (step + 1) % 10 == 0:
                log.write({"step": step + 1, "loss": float(loss.detach())})
            bar.update(job, advance=1, info=f"loss={float(loss.detach()):.3f}")
    save_module(model, run.module_path("phn_bn"))
    run.mark_done("phn-bn", {"step": steps})
    return run.read_config()["stages"]["phn-bn"]


def load_phn_bn(run: RunDir) -> PHNBN:
    """The trained PHN-BN baseline of ``run``."""
    model = PHNBN(run.preset().build())
    load_module(model, run.module_path("phn_bn"), "PHN-BN checkpoint")
    return model.eval()
