"""The PHN-BN baseline: a shared backbone whose BN parameters come from a hypernet of r.

Pareto HyperNetworks (Navon et al., 2021) restricted to BatchNorm, as compared against in
the paper. Our instantiation is the paper's "shared-encoder" PHN: stream 0 of the anchor —
stem, backbone and R-ASPP (its top node) — feeds every task's head (``head_streams`` all 0;
21.59 M / 2.06 M / 2.15 M params for the NYU / PASCAL-3 / PASCAL-5 presets, the paper's
PHN rows), initialized from the anchor, with BNs modulated by a weight hypernet of (r, c=0). Backbone, heads and hypernet are trained jointly on
Σ r_i w_i L_i with r ~ Dir(0.2). The model's cost does not depend on the preference.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from dymu_rt.control.hypernets import WeightHypernet
from dymu_rt.core.preference import sample_preferences
from dymu_rt.core.tree import identity_table
from dymu_rt.run.layout import RunDir, load_module, save_module
from dymu_rt.training.common import (check_positive, make_split, make_tasks, seed_everything, set_lr, step_decay_lr,
                                     validate_train_config, weighted_task_loss)
from dymu_rt.run.logs import JsonlLog
from dymu_rt.training.device import fp32_outputs
from dymu_rt.training.setup import TrainSetup, backward_step
from dymu_rt.utils.progress import make_progress


def shared_tree(num_layers: int, num_tasks: int) -> np.ndarray:
    """Stream 0 all the way up (with ``head_streams`` all 0, every head reads its top node)."""
    p = identity_table(num_layers, num_tasks)
    p[1:] = 0
    return p


class PHNBN(torch.nn.Module):
    """Anchor-structured net on the shared tree + a BN weight hypernet of (r, 0)."""
    def __init__(self, anchor) -> None:

        super().__init__()
        self.net = anchor
        self.hyper = WeightHypernet(anchor.num_tasks, anchor.bn_delta_size)
        self.parents = shared_tree(anchor.num_layers, anchor.num_tasks)
        self.head_streams = [0] * anchor.num_tasks

    def forward(self, x: torch.Tensor, r: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: D102
        return self.net(x, self.parents, self.hyper(r, torch.zeros((), device=r.device)),
                        head_streams=self.head_streams)


def train_phn_bn(run: RunDir, data: str = "synth", seed: int = 0, n_train: Optional[int] = None,
                 progress: bool = True, setup: Optional[TrainSetup] = None) -> dict:
    """Train the PHN-BN baseline of ``run`` (saved as phn_bn.safetensors).

    ``setup``: device, precision and data parallelism as for the other stages (the
    baseline is not resumable: it is retrained from the anchor when interrupted).
    """
    setup = setup or TrainSetup()
    dev, dist = setup.dev, setup.dist
    if run.stage_done("phn-bn"):
        return run.read_config()["stages"]["phn-bn"]
    preset = run.preset()
    cfg = preset.train
    check_positive(n_train, "--n-train")
    validate_train_config(cfg)
    dist.local_batch(cfg.controller_batch)
    seed_everything(seed + 33)
    anchor = run.load_anchor()
    for p in anchor.parameters():
        p.requires_grad_(True)
    model = dev.prepare(PHNBN(anchor))
    model.net.eval()   # BN statistics stay the anchor's; only affine parameters are learned
    tasks = make_tasks(preset)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.controller_lr)
    scaler = dev.grad_scaler()
    # Nodes off the shared tree get no gradient: DDP has to be told to expect that.
    ddp = dist.wrap(model, dev.device, find_unused=True)
    rng = np.random.default_rng(seed + 3)
    steps = cfg.phn_steps or cfg.weight_steps
    train_set = make_split(preset, data, "train", n=n_train, augment=True, seed=seed)
    log = JsonlLog(run.path / "logs" / "phn-bn.jsonl") if dist.is_main else None
    with setup.batches(train_set, cfg.controller_batch, seed + 3) as batches, \
            make_progress(disable=not (progress and dist.is_main)) as bar:
        job = bar.add_task("baseline: PHN-BN", total=steps, info="")
        for step in range(steps):
            set_lr(opt, step_decay_lr(cfg.controller_lr, step, cfg.decay_every, cfg.decay_gamma))
            r = torch.tensor(sample_preferences(len(tasks), 1, rng)[0].r, dtype=torch.float32, device=dev.device)
            batch = dev.batch(next(batches))
            with dev.autocast():
                out = ddp(batch["image"], r)
            loss, _ = weighted_task_loss(tasks, fp32_outputs(out), batch, r)
            backward_step(loss, opt, scaler)
            if (step + 1) % 10 == 0:
                loss_g = float(dist.mean(loss.detach()))
                if log is not None:
                    log.write({"step": step + 1, "loss": loss_g})
                bar.update(job, info=f"loss={loss_g:.3f}")
            bar.update(job, advance=1)
    if dist.is_main:
        save_module(model, run.module_path("phn_bn"))
        run.mark_done("phn-bn", {"step": steps, "trained_with": setup.to_dict()})
    dist.barrier()
    return run.read_config()["stages"]["phn-bn"]


def load_phn_bn(run: RunDir) -> PHNBN:
    """The trained PHN-BN baseline of ``run``."""
    model = PHNBN(run.preset().build())
    load_module(model, run.module_path("phn_bn"), "PHN-BN checkpoint")
    return model.eval()
