"""The staging area: batches a worker hands to the holder of the catalog lock, and the answers.

Why: a commit right after another worker's must first read that worker's state and catalog
(milliseconds per megabyte), so workers taking turns at the lock pay that at every commit and
do not add throughput. Instead, a worker that finds the lock held stages its batches here; the
holder takes them into its next commit (worker/group_commit.py) with its own, and answers each
once that commit is durable. The worker that stays the holder keeps its cached catalog warm.

Keys (protocol in docs/commit-protocol.md, "Staging"):
- ``<lock name>:staging``: a list of ``schemas.staging.StagedBatch`` JSON, one per batch;
- ``catalog-ingest:staging:reply:<32 hex>``: one per staging round, the answers
  (``StagedOutcome`` JSON), expiring after ``REPLY_TTL_S``;
- ``<lock name>:staging:drainer``: the notice of a holder that goes on taking staged batches
  (its committer's token), set with the answers of each commit that carried some and expiring
  after ``DRAIN_NOTICE_MS``: another worker does not take the lock in the instant it is free
  between two of that holder's commits. Advisory only: the lock and the fence still decide.

Everything read here comes from Redis, where anyone with access can write: an entry too large,
malformed, with a sequence the counter never issued or over the batch limits is dropped with a
warning (a worker that staged it would take it back itself); an answer that does not parse is
ignored. No call here fails a commit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import orjson
import redis
from pydantic import ValidationError

from catalog_core.errors import CatalogError
from schemas.staging import REPLY_KEY_PREFIX, StagedBatch, StagedOutcome
from worker.write_attempt import BatchRequest

log = logging.getLogger(__name__)

REPLY_TTL_S = 600  # an answer nobody reads (its worker gave up or died) is gone after this
# A drain notice lasts this long unless the holder's next commit renews it: it only has to cover
# the moment between two of its commits (the drain's next one starts within milliseconds), and a
# holder that died without removing it holds no other worker back for longer than this.
DRAIN_NOTICE_MS = 1000
ENVELOPE_BYTES = 64 * 1024  # what a staged entry may hold beyond its records

# Pops up to ARGV[1] entries while those taken hold under ARGV[3] bytes (so at least one is
# taken); an entry over ARGV[2] bytes is dropped unread (string.len is O(1)).
_TAKE = """
local taken, dropped, total = {}, 0, 0
while #taken < tonumber(ARGV[1]) and total < tonumber(ARGV[3]) do
  local entry = redis.call('LPOP', KEYS[1])
  if not entry then break end
  if string.len(entry) <= tonumber(ARGV[2]) then
    taken[#taken + 1] = entry
    total = total + string.len(entry)
  else
    dropped = dropped + 1
  end
end
return {dropped, taken}
"""


def staging_key(lock_name: str) -> str:
    return f"{lock_name}:staging"


def pop_entries(client: redis.Redis, key: str, limit: int, max_entry_bytes: int,
                budget_bytes: int) -> tuple[int, list[bytes]]:
    """Up to ``limit`` entries off the staging list, in order, and how many were dropped for their
    size: the next one is taken while those taken hold under ``budget_bytes``."""
    dropped, entries = client.eval(_TAKE, 1, key, limit, max_entry_bytes, budget_bytes)
    return int(dropped), list(entries)


def push_answers(client: redis.Redis, answers: Sequence[tuple[str, bytes]],
                 notice: tuple[str, str] | None = None) -> None:
    """Each ``(reply list, answer)``, in one round trip; every reply list expires. A round's batches
    share one reply list: its answers go in one RPUSH, in their order. ``notice``: ``(key, token)``
    of the holder's drain notice, set in the same round trip."""
    by_reply: dict[str, list[bytes]] = {}
    for reply_to, answer in answers:
        by_reply.setdefault(reply_to, []).append(answer)
    with client.pipeline(transaction=False) as pipe:
        for reply_to, grouped in by_reply.items():
            pipe.rpush(reply_to, *grouped)
            pipe.expire(reply_to, REPLY_TTL_S)
        if notice is not None:
            pipe.set(notice[0], notice[1], px=DRAIN_NOTICE_MS)
        pipe.execute()


# Removes the drain notice only if it is still this holder's (another may have set its own since).
_END_NOTICE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class Round:
    """One worker's batches, staged together: where their answers come, and each entry as pushed
    (in the order of the requests staged)."""

    reply_to: str
    entries: list[bytes] = field(default_factory=list)


@dataclass
class Taken:
    """A staged batch a holder carries: the entry as it came, and the request checked again from it."""

    staged: StagedBatch
    request: BatchRequest
    entry: bytes


class StagingArea:
    """The staging list of one catalog, through the store's Redis client.

    ``check`` turns a staged batch into a request again as the holder sees it (sizes, sequence
    issued); it raises ``CatalogError`` or ``ValueError`` for one to drop.
    """

    def __init__(self, client: Callable[[], redis.Redis], key: Callable[[], str], max_batch_bytes: int,
                 check: Callable[[StagedBatch], BatchRequest], group_bytes: int) -> None:
        self._client, self._key, self._check = client, key, check
        self._max_entry_bytes = max_batch_bytes + ENVELOPE_BYTES
        # A holder decodes and merges everything it takes in one commit: this bounds its memory
        # (CATALOG_GROUP_COMMIT_MAX_BYTES), whatever the number and size of the staged batches.
        self._group_bytes = group_bytes

    def stage(self, requests: Sequence[BatchRequest], joining: Round | None = None) -> Round:
        """Push ``requests`` for the holder (in one command): a new round, or more of ``joining``, a
        round whose answers are awaited (theirs come to its list too). ``RedisError`` if Redis
        refuses (then ``joining`` is as it was)."""
        staged = joining if joining is not None else Round(REPLY_KEY_PREFIX + uuid.uuid4().hex)
        entries = []
        for request in requests:
            assert request.planner is None, "a planned batch is decided under the lock, never staged"
            entries.append(orjson.dumps({
                "batch_id": request.batch_id, "sequence": request.sequence, "source": request.source,
                "final_attempt": request.final_attempt, "records": list(request.records),
                "reply_to": staged.reply_to}))
        self._client().rpush(self._key(), *entries)
        staged.entries.extend(entries)
        return staged

    def wait(self, staged: Round, timeout: float) -> list[StagedOutcome]:
        """The answers that came for ``staged`` within ``timeout`` seconds (maybe none)."""
        first = self._client().blpop([staged.reply_to], timeout=timeout)
        if first is None:
            return []
        return self._outcomes([cast(bytes, first[1]), *self._drain_answers(staged)])  # responses never decoded

    def answers_now(self, staged: Round) -> list[StagedOutcome]:
        return self._outcomes(self._drain_answers(staged))

    def withdraw(self, staged: Round, indices: Sequence[int]) -> set[int]:
        """Take back from the list the entries ``indices`` of ``staged`` no holder took yet; their indices."""
        key = self._key()
        with self._client().pipeline(transaction=False) as pipe:
            for index in indices:
                pipe.lrem(key, 1, staged.entries[index])  # type: ignore[arg-type]  # typed str; bytes go as they are
            removed = pipe.execute()
        return {index for index, count in zip(indices, removed, strict=True) if count}

    def pending(self) -> bool:
        """Whether staged batches wait for a holder; False when Redis cannot say."""
        try:
            return bool(self._client().llen(self._key()))
        except redis.RedisError:
            return False

    def take(self, limit: int, spent_bytes: int = 0) -> list[Taken]:
        """Up to ``limit`` staged batches for the holder's commit, which already took entries of
        ``spent_bytes`` (at least one if it took none); never raises."""
        budget = self._group_bytes - spent_bytes
        if limit <= 0 or budget <= 0:
            return []
        try:
            dropped, entries = pop_entries(self._client(), self._key(), limit, self._max_entry_bytes, budget)
        except redis.RedisError as exc:
            log.warning("could not take staged batches (%s); their workers will commit them", exc)
            return []
        if dropped:
            log.warning("dropped %d staged entries over %d bytes", dropped, self._max_entry_bytes)
        taken = []
        for entry in entries:
            try:
                staged = StagedBatch.model_validate_json(entry)
                taken.append(Taken(staged, self._check(staged), entry))
            except (ValidationError, CatalogError, ValueError) as exc:
                log.warning("dropped a staged entry: %s", str(exc).splitlines()[0][:300])
        return taken

    def give_back(self, taken: Sequence[Taken]) -> None:
        """Stage again what a commit that failed had taken (another holder, or its worker, takes it)."""
        if taken:
            try:
                self._client().lpush(self._key(), *(item.entry for item in reversed(taken)))
            except redis.RedisError as exc:
                log.warning("could not give back %d staged batches (%s); their workers will commit them",
                            len(taken), exc)

    def answer(self, answers: Sequence[tuple[Taken, StagedOutcome]], drainer: str | None = None) -> None:
        """Tell each staged batch's worker its outcome; never raises (a worker with no answer takes its
        batch back and finds it in the ledger). ``drainer``: the token of a holder that goes on
        taking staged batches, its drain notice set (or renewed) with the answers."""
        if not answers:
            return
        try:
            push_answers(self._client(), [(taken.staged.reply_to, outcome.model_dump_json().encode())
                                          for taken, outcome in answers],
                         None if drainer is None else (self._notice_key(), drainer))
        except redis.RedisError as exc:
            log.warning("could not answer %d staged batches (%s); their workers will find them applied",
                        len(answers), exc)

    def another_drains(self, token: str) -> bool:
        """Whether a holder other than ``token``'s says it goes on taking staged batches. A notice
        that would outlive ``DRAIN_NOTICE_MS`` (anyone with Redis access can write one) is not
        believed; False when Redis cannot say."""
        try:
            with self._client().pipeline(transaction=False) as pipe:
                pipe.get(self._notice_key())
                pipe.pttl(self._notice_key())
                holder, left_ms = pipe.execute()
        except redis.RedisError:
            return False
        return holder is not None and holder != token.encode() and 0 < left_ms <= DRAIN_NOTICE_MS

    def end_drain(self, token: str) -> None:
        """Remove ``token``'s drain notice (not another holder's); never raises (it expires anyway)."""
        try:
            self._client().eval(_END_NOTICE, 1, self._notice_key(), token)
        except redis.RedisError as exc:
            log.debug("could not remove the drain notice (%s); it expires in %d ms", exc, DRAIN_NOTICE_MS)

    def _notice_key(self) -> str:
        return f"{self._key()}:drainer"

    def _drain_answers(self, staged: Round) -> list[bytes]:
        with self._client().pipeline(transaction=True) as pipe:
            pipe.lrange(staged.reply_to, 0, 4 * len(staged.entries) + 16)  # bounded, whatever was pushed there
            pipe.delete(staged.reply_to)
            rest: list[bytes] = pipe.execute()[0]
        return rest

    @staticmethod
    def _outcomes(raw: Sequence[bytes]) -> list[StagedOutcome]:
        outcomes = []
        for answer in raw:
            try:
                outcomes.append(StagedOutcome.model_validate_json(answer))
            except ValidationError:
                log.warning("ignored an answer to staged batches that does not parse")
        return outcomes
