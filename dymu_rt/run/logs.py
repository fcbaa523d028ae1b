"""A run's stage logs, ``RUN/logs/<stage>.jsonl``: one JSON object per line, appended.

Part of the run folder's format (:mod:`dymu_rt.run`): the trainers write them, a resumed stage
drops the records it logged after the state it resumes from, and a log (or the ``logs`` folder)
is a plain file of the run, never a link that could point outside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from dymu_rt.core.errors import CheckpointError
from dymu_rt.core.io import atomic_write_text


class JsonlLog:
    """Append-only training log (one JSON object per line)."""
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if self.path.parent.is_symlink():
            raise CheckpointError(f"{self.path.parent} is a symbolic link; a run's logs folder may not be one "
                                  "(it can point outside the run)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._check()

    def _check(self) -> None:
        """A log is a regular file of the run, never a link (it could point outside the run)."""
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
            raise CheckpointError(f"{self.path} is a symbolic link or not a regular file; a run's log must be a "
                                  "plain file (delete it to start a fresh log)")

    def write(self, record: dict[str, Any]) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with open(fd, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def truncate_after(self, step: int, stage: Optional[str] = None) -> None:
        """Drop records logged after ``step`` (a resumed run re-logs them); with ``stage``,
        only that stage's records (one log holding several stages, told apart by "stage")."""
        if not self.path.exists():
            return
        self._check()

        def keep(line: str) -> bool:
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError):
                return True            # not ours to judge: a line we cannot read is kept as it is
            if not isinstance(rec, dict):
                return True
            s = rec.get("step", 0)
            s = s if isinstance(s, (int, float)) and not isinstance(s, bool) else 0
            return (stage is not None and rec.get("stage") != stage) or s <= step

        kept = [l for l in self.path.read_text(errors="replace").splitlines() if l and keep(l)]
        atomic_write_text(self.path, "".join(k + "\n" for k in kept))
