"""Multi-task relative performance Δm (Maninis et al., CVPR 2019).

Δm = (1/N) Σ_i (1/|M_i|) Σ_{m ∈ M_i} (-1)^{l_m} (M_mt,m − M_st,m) / M_st,m × 100,

with l_m = 1 when lower is better: the average relative gain (in percent) of a
multi-task model over single-task baselines; positive = the multi-task model is better.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence, Union

from dymu_rt.core.errors import ValidationError
from dymu_rt.tasks.base import Task

Directions = Mapping[str, bool]


def delta_m(mt: Mapping[str, Mapping[str, float]], st: Mapping[str, Mapping[str, float]],
            tasks: Union[Sequence[Task], Mapping[str, Directions]],
            metrics: Optional[Mapping[str, Sequence[str]]] = None) -> float:
    """Δm (percent) of multi-task metrics ``mt`` against single-task metrics ``st``.

    ``mt`` and ``st`` map task name -> metric name -> value (e.g. what an evaluation
    returns; unknown keys such as "loss" are ignored). ``tasks`` gives the tasks and the
    direction of their metrics: :class:`Task` objects, or task name -> {metric: True if
    higher is better}. By default every metric with a known direction that both ``mt``
    and ``st`` report is used; ``metrics`` (task name -> metric names) narrows that,
    e.g. to the primary metrics.
    """
    directions = {t.name: dict(t.metric_directions) for t in tasks} if not isinstance(tasks, Mapping) \
        else {name: dict(d) for name, d in tasks.items()}
    if not directions:
        raise ValidationError("delta_m needs at least one task")
    per_task = []
    for name, dirs in directions.items():
        if name not in mt or name not in st:
            side = "multi-task" if name not in mt else "single-task"
            raise ValidationError(f"task {name!r} has no {side} metrics, expected metrics for every task")
        names = list(metrics[name]) if metrics is not None and name in metrics \
            else [m for m in dirs if m in mt[name] and m in st[name]]
        if not names:
            raise ValidationError(f"task {name!r}: no metric both results report, expected some of {', '.join(dirs)}")
        gains = []
        for m in names:
            if m not in dirs:
                raise ValidationError(f"task {name!r}: metric {m!r} has no known direction, "
                                      f"expected one of {', '.join(dirs)}")
            if m not in mt[name] or m not in st[name]:
                raise ValidationError(f"task {name!r}: metric {m!r} is missing from the "
                                      f"{'multi' if m not in mt[name] else 'single'}-task results")
            a, b = float(mt[name][m]), float(st[name][m])
            if b == 0 or not math.isfinite(a) or not math.isfinite(b):
                raise ValidationError(f"task {name!r}: metric {m!r} gives multi-task {a} vs single-task {b}, "
                                      f"expected finite values and a non-zero single-task value")
            sign = 1.0 if dirs[m] else -1.0
            gains.append(sign * (a - b) / b * 100.0)
        per_task.append(sum(gains) / len(gains))
    return sum(per_task) / len(per_task)
