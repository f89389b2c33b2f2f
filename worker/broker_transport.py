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

The transport is registered with kombu as ``catalog-redis`` (a name, not a module path, so that
logs read ``catalog-redis://...``); it takes the same URLs as ``redis://``.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis

from worker.bad_messages import CheckedRedis, TolerantMessage


class Channel(kombu_redis.Channel):
    Message = TolerantMessage

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
