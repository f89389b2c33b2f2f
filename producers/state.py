"""Where a batch is, as producers and the CLI report it. No Celery here, so it imports fast."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from schemas import BatchResult

# ``lost``: queued, no final result, and no trace of it left in Redis (it lost its data):
# resubmit with the same batch id. ``unknown``: no producer queued this id here, or its
# result expired (CATALOG_RESULT_EXPIRES).
FINAL_STATES = frozenset({"done", "failed", "lost"})


@dataclass(frozen=True)
class BatchState:
    """Where a batch is: ``queued``, ``running``, ``retrying``, ``failed``, ``lost``, ``unknown``, or ``done``."""

    batch_id: str
    state: str
    result: BatchResult | None = None
    reason: str | None = None
    since: dt.datetime | None = None  # when it was queued, for a batch still waiting

    @property
    def final(self) -> bool:
        return self.result is not None or self.state in FINAL_STATES
