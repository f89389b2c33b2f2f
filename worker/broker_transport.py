"""The workers' Redis transport: kombu's, with two fixes. Installed by worker/app.py (``broker_transport``).

1. A channel closed after its connection was collected raises a connection error, not
   ``AttributeError`` (kombu 5.7.0; the family of kombu#582 and kombu#970). When Redis goes away,
   Celery's consumer (celery/worker/consumer/consumer.py:476 and :487) calls
   ``connection.collect()`` and then ``connection.close()`` under ``ignore_errors``, which only
   swallows connection and channel errors. In ``collect()`` (kombu/connection.py:408-430), both
   failures below are swallowed as connection errors (connection.py:404 and :416):

   - closing the task channel raises first, in ``_brpop_read`` (an outstanding BRPOP on the dead
     socket, kombu/transport/redis.py:1894), before the channel is marked closed. A BRPOP is
     outstanding beside an unacknowledged batch whenever the prefetch exceeds the batches held:
     concurrency above 1, or a retry waiting for its countdown (Celery raises the prefetch for it);
   - ``Transport.close_connection`` (kombu/transport/virtual/base.py:988) then closes the newest
     channel first, the remote-control (pidbox) channel, whose auto-delete fanout queue cannot be
     deleted while Redis is down (redis.py:1906): the loop stops there and the task channel
     is never closed;
   - ``_do_close_transport`` sets ``transport.client = None`` (connection.py:429), while the
     connection keeps its ``_default_channel``.

   ``connection.close()`` then closes that task channel again: it drops its pools
   (redis.py:1907), and restoring its unacknowledged batch (virtual/base.py:806 ->
   redis.py:494 ``restore_unacked``) builds a new pool from ``_connparams``, which reads
   ``self.connection.client.hostname`` (redis.py:1957-1959) on a client that is now None. The
   ``AttributeError`` escapes ``ignore_errors`` and stops the worker ("Unrecoverable error").

   With this channel the restore fails as it does while Redis is down: with a connection error,
   which every caller already handles. The batch stays in kombu's unacked set and is delivered
   again after the visibility timeout; the consumer reconnects.

2. Queue entries are read through ``CheckedRedis`` and messages built with ``TolerantMessage``
   (worker/bad_messages.py): an entry that is not a kombu envelope, or a body that is not valid
   base64, no longer raises out of the event loop; the consumer rejects it with the reason.

3. A message cannot be lost between its pop and its unacked record (worker/reliable_queue.py).
   Stock ``_brpop_start``/``_brpop_read`` (kombu/transport/redis.py:1459-1500) pop with BRPOP and
   ``QoS.append`` (redis.py:476) records the message later, from ``basic_consume``'s callback
   (virtual/base.py:645-648): Redis or the worker killed in between lost the batch. When the
   channel consumes exactly one list key (``priority_steps: [0]``, one queue, no
   ``global_keyprefix``), it pops with ``BRPOPLPUSH <queue> <queue>:claimed``, keeps the exact
   popped bytes on the channel until ``QoS.append`` (same thread, same call chain: ``_deliver`` ->
   callback -> ``append``), and records with one script that also takes them off the claim.
   ``QoS.restore_visible`` (the periodic sweep of unacked messages) also sweeps the claim lists:
   a claim still unrecorded after ``claim_grace`` seconds goes back to the queue. Otherwise the
   channel logs a warning and pops with BRPOP, as stock kombu.

The transport is registered with kombu as ``catalog-redis`` (a name, not a module path, so that
logs read ``catalog-redis://...``); it takes the same URLs as ``redis://``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from queue import Empty
from time import monotonic, time
from typing import Any

import redis
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

from worker import reliable_queue
from worker.bad_messages import CheckedRedis, TolerantMessage, checked_entry

log = logging.getLogger("catalog.worker.broker")


@dataclass(frozen=True)
class Claim:
    """A message popped into its queue's claim list and not yet recorded as unacknowledged."""

    queue_key: str
    popped: bytes  # the exact bytes in the claim list, which the record removes
    delivery_tag: str


class QoS(kombu_redis.QoS):
    def append(self, message: Any, delivery_tag: str) -> None:
        claim = self.channel.take_claim(delivery_tag)
        if claim is None:  # not popped through a claim (basic_get, fallback BRPOP): kombu's record
            super().append(message, delivery_tag)
            return
        delivery = message.delivery_info
        with self.channel.conn_or_acquire() as client:
            reliable_queue.record_claimed(
                client, claim.queue_key, claim.popped, delivery_tag, time(),
                dumps([message._raw, delivery["exchange"], delivery["routing_key"]]),
                self.unacked_index_key, self.unacked_key)
        virtual.QoS.append(self, message, delivery_tag)  # the in-memory record, as kombu's append ends

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        # kombu scans only on every ``interval``-th call (redis.py:523-528); the claims go with it.
        due = self._vrestore_count % (interval or 1) == 0
        super().restore_visible(start=start, num=num, interval=interval)
        if due:
            self.channel.sweep_claims()


class Channel(kombu_redis.Channel):
    Message = TolerantMessage
    QoS = QoS
    # (kombu types these class attributes by their defaults: a tuple of its length, None, a bool)
    from_transport_options = kombu_redis.Channel.from_transport_options + ("claim_grace",)  # type: ignore[assignment]
    claim_grace = reliable_queue.CLAIM_GRACE
    _claiming: tuple[str, str] | None = None  # (queue, key) of the outstanding BRPOPLPUSH
    _claim: Claim | None = None  # popped, being delivered, not yet recorded
    _warned_brpop = False

    def _claimable_key(self, queues: list[str]) -> str | None:
        """The one list key this channel pops from, or None when it must pop with BRPOP."""
        keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
        if len(keys) == 1 and not self.global_keyprefix:
            return keys[0]
        if not self._warned_brpop:
            self._warned_brpop = True
            log.warning("consuming %d list keys (%s): popping with BRPOP, so a message popped just before "
                        "a crash can be lost; set priority_steps [0] and consume one queue", len(keys),
                        "with global_keyprefix" if self.global_keyprefix else "several queues or priorities")
        return None

    def _brpop_start(self, timeout: int | None = None) -> None:
        queues = self._queue_cycle.consume(len(self.active_queues))  # no side effect (kombu/utils/scheduling.py)
        key = self._claimable_key(queues) if queues else None
        if key is None:
            self._claiming = None
            super()._brpop_start(timeout)
            return
        # As kombu's _brpop_start (redis.py:1459-1474), with BRPOPLPUSH: it answers the item alone.
        # A reply kombu leaves unread while the channel has no credit (MultiChannelPoller._pause_brpop)
        # sits in the claim list meanwhile: unread past the grace, it is delivered twice (harmless).
        timeout = self.brpop_timeout if timeout is None else timeout
        self._claiming = (queues[0], key)
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()  # type: ignore[assignment]
        self.client.connection.send_command("BRPOPLPUSH", key, reliable_queue.claim_key(key), timeout or 0)

    def _brpop_read(self, **options: Any) -> bool:
        if self._claiming is None:
            return bool(super()._brpop_read(**options))
        queue, key = self._claiming
        # As kombu's _brpop_read (redis.py:1476-1500): same reconnect, rotation, Empty and re-auth.
        try:
            try:
                item = self.client.parse_response(self.client.connection, "BRPOPLPUSH", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not item:
                raise Empty()
            self._queue_cycle.rotate(queue)
            payload = loads(bytes_to_str(checked_entry(item, queue)))  # a malformed entry becomes an envelope with the reason
            self._claim = Claim(key, item, payload["properties"]["delivery_tag"])
            try:
                self.connection._deliver(payload, queue)
            finally:
                # Not recorded (no consumer, or the record failed): it stays claimed until the sweep.
                self._claim = None
            return True
        finally:
            self._claiming = None
            self._in_poll = None  # type: ignore[assignment]
            self._flush_brpop_reauth()

    def _poll_error(self, type: str, **options: Any) -> None:
        if type == "BRPOP" and self._claiming is not None:
            self.client.parse_response(self.client.connection, "BRPOPLPUSH")
            return
        super()._poll_error(type, **options)

    def take_claim(self, delivery_tag: str) -> Claim | None:
        """The claim of the message being delivered, if ``delivery_tag`` is that message's; only once."""
        claim = self._claim
        if claim is None or claim.delivery_tag != delivery_tag:
            return None
        self._claim = None
        return claim

    def sweep_claims(self) -> None:
        """Put back into their queues the claims nobody recorded within ``claim_grace`` seconds."""
        if self.global_keyprefix:
            return
        keys = {self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in self.active_queues}
        with self.conn_or_acquire() as client:
            for key in sorted(keys):
                moved = reliable_queue.sweep_claims(client, key, float(self.claim_grace))
                if moved:
                    log.warning("%d message(s) popped from %r but not recorded within %gs (a crash, or a "
                                "pause, between pop and record) went back to the queue", moved, key,
                                float(self.claim_grace))

    def _get_client(self) -> Any:
        client = super()._get_client()  # also kombu's check of the redis-py version
        return CheckedRedis if client is redis.Redis else client  # a global_keyprefix client stays as is

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        transport = self.connection
        if transport is None or transport.client is None:
            raise redis.exceptions.ConnectionError(
                "the broker connection of this channel is already closed; its unacknowledged "
                "messages come back after the visibility timeout")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        return params


class Transport(kombu_redis.Transport):
    Channel = Channel


TRANSPORT = "catalog-redis"
TRANSPORT_ALIASES[TRANSPORT] = f"{__name__}:Transport"
