"""The paper's per-task loss scales w_i (Raychaudhuri et al., CVPR 2022, Sec. 5).

Training minimises Σ_i r_i w_i L_i; w_i puts the task losses on comparable scales.
Keys are the benchmark names and the task names of docs/INTERFACES.md. CIFAR-100 has
20 tasks of one kind, all weighted 1, so its entry is a single number.
"""

from __future__ import annotations

from typing import Mapping, Union

from dymu_rt.core.errors import ValidationError

PAPER_LOSS_WEIGHTS: Mapping[str, Union[float, Mapping[str, float]]] = {
    "nyuv2": {"semseg": 1.0, "normals": 10.0, "depth": 3.0},
    "pascal": {"semseg": 1.0, "human_parts": 2.0, "saliency": 5.0, "normals": 10.0, "edges": 50.0},
    "cifar100": 1.0,
}


def paper_loss_weight(benchmark: str, task_name: str) -> float:
    """w_i of ``task_name`` on ``benchmark`` ("nyuv2", "pascal" or "cifar100")."""
    if benchmark not in PAPER_LOSS_WEIGHTS:
        raise ValidationError(f"benchmark {benchmark!r} has no paper loss weights, "
                              f"expected one of {', '.join(PAPER_LOSS_WEIGHTS)}")
    entry = PAPER_LOSS_WEIGHTS[benchmark]
    if not isinstance(entry, Mapping):
        return float(entry)
    if task_name not in entry:
        raise ValidationError(f"task {task_name!r} is not a task of {benchmark!r}, "
                              f"expected one of {', '.join(entry)}")
    return float(entry[task_name])
