"""No message can stop a worker: one that cannot be decoded is rejected with the reason, never lost.

Anyone who can LPUSH onto the queue can hand the worker anything. Stock kombu 5.7 / Celery 5.7 let
some of it through badly:

- a body that is not valid base64 raises ``binascii.Error`` inside kombu's ``virtual.Message``
  (kombu/transport/virtual/base.py:336, called from ``Channel.basic_consume._callback``). That
  escapes the worker's event loop as an "Unrecoverable error" and the worker exits; the message
  was already popped from the queue and is lost.
- a queue entry that is not a kombu envelope (not JSON, or without ``properties.delivery_tag``)
  raises in kombu's ``Channel._brpop_read`` (redis.py:1491 ``loads``) or ``virtual.Message``:
  the same exit, or a reconnect loop, and the entry is lost.
- a body that is not JSON reaches ``Consumer.on_decode_error``, which logs and acks it: dropped,
  and ``catalog status`` says "queued" forever. Other shapes end in ``on_unknown_message`` or
  ``on_invalid_task``, which drop them the same way.

So the Redis channel reads the queue through :class:`CheckedRedis` (an entry that is not a
kombu envelope becomes one that carries the reason), builds messages with
:class:`TolerantMessage` (a body it cannot decode is kept undecoded, with the reason), and :class:`Consumer` checks each message before Celery sees
it: anything it cannot run is recorded as a rejected batch (``catalog rejected``) and stored as
the task's REJECTED result (``catalog status``), then acked. ``kwargs: null``, which celery-node
sends, is accepted as ``{}``.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
import weakref
from typing import TYPE_CHECKING, Any

import orjson
import redis
from celery import Celery, states
from celery.exceptions import BackendError
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.message import Message as BaseMessage
from kombu.transport.virtual import Message as VirtualMessage
from vine import promise

from catalog_core.rejections import RejectedBatch, record_rejection
from schemas import BatchResult, BatchStatus, RecordError

if TYPE_CHECKING:
    from worker.tasks import Context

log = logging.getLogger("catalog.worker")

MAX_ID_CHARS = 200  # a task id and a reason come from outside: bounded before they are stored or printed
MAX_REASON_CHARS = 500
PROTOCOL_2 = "a Celery protocol 2 task message: headers with 'task' and 'id', a JSON body [args, kwargs, embed]"

UNDECODABLE = "x-catalog-undecodable"  # property of an envelope made for an entry kombu could not read

_CONTEXTS: weakref.WeakKeyDictionary[Celery, Context] = weakref.WeakKeyDictionary()


def install(app: Celery, context: Context) -> None:
    """Let this app's consumer reach the settings and Redis (the consumer is built by Celery)."""
    _CONTEXTS[app] = context


def _envelope_problem(envelope: Any) -> str | None:
    if not isinstance(envelope, dict):
        return "the queue entry is not a JSON object (not a kombu message)"
    properties = envelope.get("properties")
    if not isinstance(properties, dict) or not isinstance(properties.get("delivery_tag"), str):
        return "the queue entry has no properties.delivery_tag (not a kombu message)"
    info = properties.get("delivery_info")
    if not isinstance(info, dict) or not {"exchange", "routing_key"} <= info.keys():
        return "the queue entry has no properties.delivery_info with exchange and routing_key (not a kombu message)"
    return None


def checked_entry(item: bytes, queue: str) -> bytes:
    """``item`` if it is a kombu envelope, else an envelope that carries the reason (and any task id)."""
    envelope: Any
    problem: str | None
    try:
        envelope = orjson.loads(item)
    except orjson.JSONDecodeError as exc:
        envelope, problem = None, f"the queue entry is not JSON: {exc}"
    else:
        problem = _envelope_problem(envelope)
    if problem is None:
        return item
    found = envelope if isinstance(envelope, dict) else {}
    headers, properties = found.get("headers"), found.get("properties")
    headers = headers if isinstance(headers, dict) else {}
    properties = properties if isinstance(properties, dict) else {}
    return orjson.dumps({
        "body": None, "content-type": None, "content-encoding": None,
        "headers": {"id": headers["id"]} if isinstance(headers.get("id"), str) else {},
        "properties": {
            "delivery_tag": str(uuid.uuid4()), "delivery_info": {"exchange": queue, "routing_key": queue},
            "correlation_id": properties.get("correlation_id") if isinstance(properties.get("correlation_id"), str)
            else None,
            UNDECODABLE: problem,
        },
    })


class CheckedRedis(redis.Redis):
    """The channel's client: what BRPOP takes off a queue reaches kombu as a readable envelope."""

    def parse_response(self, connection: Any, command_name: str | bytes, **options: Any) -> Any:
        response = super().parse_response(connection, command_name, **options)
        if command_name == "BRPOP" and response:
            key, item = response
            queue = (key.decode(errors="replace") if isinstance(key, bytes) else str(key)).rsplit("\x06\x16", 1)[0]
            return key, checked_entry(item, queue)
        return response


class TolerantMessage(VirtualMessage):
    """kombu's message, except that a body it cannot decode is kept as is, with the reason."""

    undecodable: str | None = None

    def __init__(self, payload: dict[str, Any], channel: Any = None, **kwargs: Any) -> None:
        self.undecodable = payload["properties"].get(UNDECODABLE)
        try:
            super().__init__(payload, channel=channel, **kwargs)
        except (ValueError, TypeError, LookupError) as exc:  # binascii.Error is a ValueError
            properties = payload["properties"]
            encoding = properties.get("body_encoding")
            BaseMessage.__init__(
                self, body=None, channel=channel, delivery_tag=properties["delivery_tag"],
                content_type=payload.get("content-type"), content_encoding=payload.get("content-encoding"),
                headers=payload.get("headers"), properties=properties,
                delivery_info=properties.get("delivery_info"), postencode="utf-8", **kwargs,
            )
            self._raw = payload
            self.undecodable = self.undecodable or f"the message body is not valid {encoding or 'text'}: {exc}"


def _problem(message: Any) -> str | None:
    """Why the worker cannot run ``message``, or None. Rewrites ``kwargs: null`` to ``{}``."""
    if getattr(message, "undecodable", None):
        return str(message.undecodable)
    headers = message.headers
    if not isinstance(headers, dict):
        return f"the message headers are not an object; send {PROTOCOL_2}"
    try:
        payload = message.decode()
    except Exception as exc:  # noqa: BLE001 - kombu raises DecodeError, ContentDisallowed, and more
        return f"the message body cannot be decoded as {message.content_type!r}: {exc}"
    if "task" not in headers:
        if isinstance(payload, dict) and "task" in payload and "id" in payload:
            return None  # Celery protocol 1 (task in the body): Celery knows it
        return f"not a Celery task message: no 'task' header; send {PROTOCOL_2}"
    if not isinstance(headers.get("id"), str):
        return f"the task message has no 'id' header; send {PROTOCOL_2}"
    if not (isinstance(payload, list | tuple) and len(payload) == 3):
        return f"the body of a task message must be [args, kwargs, embed]; send {PROTOCOL_2}"
    args, kwargs, embed = payload
    if kwargs is None:  # celery-node sends null for "no keyword arguments"
        kwargs = {}
        message._decoded_cache = [args, kwargs, embed]
        message.body = orjson.dumps(message._decoded_cache)  # the pool child decodes the body again
    if not isinstance(args, list) or not isinstance(kwargs, dict) or not isinstance(embed, dict | None):
        return f"the body of a task message must be [args (a list), kwargs (an object), embed]; send {PROTOCOL_2}"
    return None


def _task_id(message: Any) -> str:
    headers = message.headers if isinstance(message.headers, dict) else {}
    properties = message.properties if isinstance(message.properties, dict) else {}
    found = headers.get("id") or properties.get("correlation_id") or f"message-{message.delivery_tag}"
    return str(found)[:MAX_ID_CHARS]


class Consumer(CeleryConsumer):
    """Celery's consumer, with every message checked before Celery handles it."""

    _redis: redis.Redis | None = None

    def create_task_handler(self, promise: Any = promise) -> Any:
        handle = super().create_task_handler(promise)

        def on_task_received(message: Any) -> Any:
            try:
                problem = _problem(message)
            except Exception as exc:  # noqa: BLE001 - a message must never stop the worker
                problem = f"the message could not be read: {type(exc).__name__}: {exc}"
            if problem is None:
                return handle(message)
            return self.reject_message(message, problem)

        return on_task_received

    def reject_message(self, message: Any, reason: str) -> None:
        """Record ``message`` as a rejected batch and store that as its result, then ack it."""
        task_id = _task_id(message)
        reason = reason[:MAX_REASON_CHARS]
        log.warning("message %r rejected: %r", task_id, reason)  # repr: no raw control characters
        result = BatchResult(batch_id=task_id, status=BatchStatus.REJECTED,
                             errors=[RecordError(index=None, loc="message", msg=reason)])
        context = _CONTEXTS.get(self.app)
        try:
            if context is not None:
                settings = context.settings
                if self._redis is None:
                    self._redis = redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
                rejected = RejectedBatch(batch_id=task_id, source="unknown (undecodable message)", submitted_at=None,
                                         rejected_at=dt.datetime.now(dt.UTC), result=result)
                record_rejection(self._redis, settings.queue, rejected, settings.rejected_keep)
            self.app.backend.store_result(task_id, result.model_dump(mode="json"), states.SUCCESS)
        except (redis.RedisError, BackendError) as exc:
            # Not acked: the message stays in kombu's unacked set and comes back after the
            # visibility timeout, to be recorded then.
            log.error("could not record the rejection of message %r (%s); it will come back", task_id, exc)
            return
        except Exception:  # noqa: BLE001 - whatever else goes wrong here must not stop the worker
            log.exception("could not record the rejection of message %r; dropping it", task_id)
        message.ack_log_error(log, self.connection_errors)
