"""The batches of one commit, each applied in turn: step 3 of "One write" in docs/commit-protocol.md.

Each batch's outcome is decided against the catalog its predecessors in the group left (an
image, in memory) and the commit's draft state: a batch id in the ledger is a ``duplicate``;
otherwise its records are merged (sequence-ordered fields, worker/merge.py), and an applied
batch adds its field versions, its ledger entry and its change event to the draft. Nothing
here touches the files or the lock (worker/store.py does, around it); the only I/O is taking
a sequence for a batch that came without one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from catalog_core.errors import ProductNotYetCreatedError
from catalog_core.events import EncodedEvent
from schemas import BatchResult, BatchStatus
from schemas.batch import digest_of
from worker.catalog_image import CatalogImage
from worker.changes import change_event
from worker.merge import merge_into
from worker.write_attempt import BatchRequest, Outcome, WriteAttempt, batch_status, order_key

log = logging.getLogger(__name__)


class GroupMerge:
    """Applies a commit's batches to its draft: ``write`` (lock, fence, draft state), ``backup``
    (the version every batch of the commit replaces, named in their results and events).

    ``take_sequence(floor)`` numbers a batch that came without a sequence (under the lock);
    ``canonical(records)`` checks a planned batch's records for size and returns their JSON;
    ``keep_events``: whether applied batches add change events (``CATALOG_EVENTS_MAXLEN`` > 0).
    """

    def __init__(self, write: WriteAttempt, backup: Path | None, take_sequence: Callable[[int], int],
                 canonical: Callable[[Sequence[object]], bytes], keep_events: bool) -> None:
        self.write, self.backup = write, backup
        self._take_sequence, self._canonical, self._keep_events = take_sequence, canonical, keep_events

    def merge(self, image: CatalogImage, requests: Sequence[BatchRequest], start: int,
              outcomes: dict[int, Outcome]) -> CatalogImage:
        """Apply ``requests[start:]`` to ``image`` in sequence order, each outcome into ``outcomes``."""
        for index in sorted(range(start, len(requests)), key=lambda i: order_key(requests[i], i)):
            try:
                outcomes[index], image = self.apply_one(image, requests[index])
            except ProductNotYetCreatedError as exc:
                outcomes[index] = exc
        return image

    def apply_one(self, image: CatalogImage, request: BatchRequest) -> tuple[BatchResult, CatalogImage]:
        """One batch's result, and the image with its changes (``image`` itself unless it applied)."""
        write, backup = self.write, self.backup
        state, batch_id, digest, records = write.state, request.batch_id, request.digest, request.records
        sequence = request.sequence
        if sequence is None:
            sequence = self._take_sequence(state.sequence_high)
        original = state.original(batch_id)
        if original is not None:
            matches = None if original.content_sha256 is None or request.planner else original.content_sha256 == digest
            if matches is False:
                log.warning("batch %s was already %s with OTHER records: this submission is not applied",
                            batch_id, original.status.value)
            else:
                log.info("batch %s was already %s: duplicate", batch_id, original.status.value)
            state.complete(sequence)
            state.duplicates += 1
            return BatchResult(batch_id=batch_id, status=BatchStatus.DUPLICATE, sequence=sequence, fence=write.fence,
                               original=original, content_sha256=digest, content_matches=matches), image
        deletions: list[str] = []
        if request.planner is not None:
            planned = request.planner(state)
            records, deletions = planned.records, [p for p in planned.deletions if p in image.position]
            digest = digest_of(self._canonical(records))
        outcome = merge_into(image, records, sequence, state.versions)
        status = batch_status(outcome, batch_id, sequence, state, request.final_attempt)
        if deletions and status == BatchStatus.UNCHANGED:
            status = BatchStatus.APPLIED
        applied = status == BatchStatus.APPLIED
        result = BatchResult(batch_id=batch_id, status=status, created=outcome.created, updated=outcome.updated,
                             unchanged=outcome.unchanged, deleted=len(deletions) if applied else 0,
                             errors=outcome.errors, sequence=sequence, fence=write.fence,
                             superseded=outcome.superseded, content_sha256=digest,
                             backup=str(backup) if applied and backup else None)
        state.versions.update(outcome.versions)
        state.record(result, dt.datetime.now(dt.UTC))
        if applied:
            state.applied += 1
            removed = {product_id: image.product(product_id) for product_id in deletions}
            order, appended = outcome.order, outcome.appended
            if removed:
                order, appended = [p for p in (order or [*image.ids, *appended]) if p not in removed], []
                state.versions.update(dict.fromkeys(removed, {}))  # as if never created
            image = image.with_changes({p: v for p, v in outcome.changed_products.items() if p not in removed}, order,
                                       appended)
            if self._keep_events:
                state.events.append(EncodedEvent(change_event(write.fence, batch_id, request.source, sequence, backup,
                                                              outcome.changed_products, outcome.previous, removed)))
        return result, image
