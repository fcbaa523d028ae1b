"""Evaluate a tree of the anchor net on a dataset, and trivial baselines to beat.

Trivial baselines (what "clearly beats" is measured against): segmentation = the
majority class of the training set everywhere; depth = the mean training depth
everywhere; normals = the mean training normal everywhere; other tasks = their
constant prior. They are computed with the same task meters as the model.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from dymu_rt.core.kinds import LABELLED_KINDS
from dymu_rt.utils.progress import make_progress


def _batches(dataset, batch_size: int):
    for s in range(0, len(dataset), batch_size):
        yield torch.utils.data.default_collate([dataset[i] for i in range(s, min(len(dataset), s + batch_size))])


@torch.no_grad()
def evaluate_tree(anchor, tasks, dataset, parents=None, bn_deltas: Optional[torch.Tensor] = None,
                  batch_size: int = 32, progress: bool = False, description: str = "eval",
                  forward=None, device: Optional[torch.device] = None) -> dict[str, dict[str, float]]:
    """Per-task metrics (and mean loss under key "loss") of one tree on ``dataset``.

    ``forward`` (images -> outputs) replaces ``anchor(x, parents, bn_deltas)`` when given.
    ``device``: where the forward pass runs (the anchor and deltas must already be there;
    default: the CPU). Metrics and losses are computed on the CPU in fp32.
    """
    was = anchor.training if anchor is not None else False
    if anchor is not None:
        anchor.eval()
    meters = {t.name: t.new_meter() for t in tasks}
    loss_sum = {t.name: 0.0 for t in tasks}
    n = 0
    with make_progress(disable=not progress, transient=True) as bar:
        job = bar.add_task(description, total=len(dataset), info="")
        for batch in _batches(dataset, batch_size):
            x = batch["image"]
            xd = x if device is None else x.to(device, non_blocking=True)
            out = forward(xd) if forward is not None else anchor(xd, parents, bn_deltas)
            out = {k: v.detach().float().cpu() for k, v in out.items()}
            b = x.shape[0]
            for t in tasks:
                tgt, msk = batch["targets"][t.name], batch["masks"][t.name]
                meters[t.name].update(out[t.name], tgt, msk)
                loss_sum[t.name] += float(t.loss(out[t.name], tgt, msk)) * b
            n += b
            bar.update(job, advance=b)
    if anchor is not None:
        anchor.train(was)
    res = {}
    for t in tasks:
        m = dict(meters[t.name].compute())
        m["loss"] = loss_sum[t.name] / max(1, n)
        res[t.name] = {k: float(v) for k, v in m.items()}
    return res


def _stat_indices(n: int, n_stat: int) -> list[int]:
    """Up to ``n_stat`` indices spread evenly over ``range(n)`` (all of them if n <= n_stat)."""
    if n <= n_stat:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, n_stat).round().astype(int).tolist()))


def _constant_output(task, train_set, n_stat: int = 256) -> torch.Tensor:
    """A constant per-pixel prediction (raw output space) from training statistics.

    ``train_set`` should be un-augmented: augmentation zooms, and zooming divides depth.
    Statistics are accumulated sample by sample over up to ``n_stat`` samples.
    """
    if len(train_set) == 0:
        raise ValueError("trivial baselines need at least one training sample")
    counts = torch.zeros(max(1, task.out_channels), dtype=torch.float64)
    total = torch.zeros(3, dtype=torch.float64)
    n_valid = 0
    for i in _stat_indices(len(train_set), n_stat):
        s = train_set[i]
        tg, mk = s["targets"][task.name], s["masks"][task.name]
        if task.kind in LABELLED_KINDS:
            counts += torch.bincount(tg[mk].long().reshape(-1), minlength=task.out_channels).double()
        elif task.kind == "normals":
            total += tg.permute(1, 2, 0)[mk].double().sum(0)
        else:                                # depth / saliency / edges: a mean of valid values
            v = tg[0][mk] if tg.dim() == 3 else tg[mk]
            total[0] += v.double().sum()
            n_valid += int(v.numel())
    if task.kind in LABELLED_KINDS:
        logits = torch.full((task.out_channels,), -10.0)
        logits[int(counts.argmax())] = 10.0
        return logits
    if task.kind == "normals":
        v = total.float()
        return v / v.norm().clamp_min(1e-8)
    mean = (total[0] / max(1, n_valid)).float()
    if task.kind == "depth":
        return mean.reshape(1)
    # saliency / edges: the logit of the mean positive rate
    p = mean.clamp(1e-4, 1 - 1e-4)
    return torch.log(p / (1 - p)).reshape(1)


@torch.no_grad()
def trivial_baselines(tasks, train_set, val_set, batch_size: int = 32,
                      n_stat: int = 256) -> dict[str, dict[str, float]]:
    """Metrics of constant predictors (majority class, mean depth, mean normal, prior).

    The constants come from up to ``n_stat`` samples of ``train_set``, which should be the
    un-augmented training split (see :func:`_constant_output`).
    """
    consts = {t.name: _constant_output(t, train_set, n_stat) for t in tasks}

    def forward(x):
        b, _, h, w = x.shape
        out = {}
        for t in tasks:
            c = consts[t.name]
            out[t.name] = c.view(1, -1).expand(b, -1).clone() if t.kind == "classification" else \
                c.view(1, -1, 1, 1).expand(b, -1, h, w).clone()
        return out

    return evaluate_tree(None, tasks, val_set, forward=forward, batch_size=batch_size)
