"""Where a batch is, as producers and the CLI report it. No Celery here, so it imports fast."""

from __future__ import annotations

from dataclasses import dataclass

from schemas import BatchResult


@dataclass(frozen=True)
class BatchState:
    """Where a batch is: ``queued``, ``running``, ``retrying``, ``failed``, or its final status."""

    batch_id: str
    state: str
    result: BatchResult | None = None
    reason: str | None = None

    @property
    def final(self) -> bool:
        return self.result is not None or self.state == "failed"
