"""Click events for `POST /_rerank/events`: UBI-shaped validation and a small aiohttp handler.

A client sends what the user did with a result, carrying the `query_id` the proxy returned in
the `X-Rerank-Query-Id` response header. The body is one UBI 1.3 event object or a JSON array
of them::

    {"action_name": "click", "query_id": "6f1c...", "timestamp": "2025-01-01T10:00:00Z",
     "client_id": "browser-7", "event_attributes": {"object": {"object_id": "4983"},
                                                   "position": {"ordinal": 2}}}

Only the fields the A/B report needs are stored: free-form parts (`message`, extra attributes)
are dropped so that no user data lands in the log by accident, and `client_id`, `session_id`
and `user_id` are stored as keyed hashes. A bad event rejects the whole request with 400 in
OpenSearch's error shape, naming the event and the field.

Example:
    >>> event = validate_event({"action_name": "click", "query_id": "q-1",
    ...                         "event_attributes": {"object": {"object_id": 4983}, "position": {"ordinal": 2}}},
    ...                        secret="s", now="2025-01-01T00:00:00.000Z")
    >>> event["event_attributes"], event["timestamp"]
    ({'object': {'object_id': '4983', 'object_id_field': '_id'}, 'position': {'ordinal': 2}}, '2025-01-01T00:00:00.000Z')
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Callable

from es_rerank.proxy.online_ab.assignment import pseudonym
from es_rerank.proxy.online_ab.decision_log import JsonLinesWriter, utc_now
from es_rerank.evaluation.protocol import APPLICATION

MAX_BODY_BYTES = 1 << 20
MAX_EVENTS = 1000
CLICK_ACTIONS = ("click", "click_through")
_SHORT = 100          # UBI maxLength of names and ids
_OBJECT_ID = 256      # UBI maxLength of object_id
HASHED = ("client_id", "session_id", "user_id")


class EventError(ValueError):
    """An event (or the request body) does not follow the expected schema; the message says where."""


def validate_event(data: object, secret: str, now: str | None = None, where: str = "event") -> dict:
    """Check one event and return what is stored: UBI fields, identifiers hashed, timestamp set."""
    if not isinstance(data, dict):
        raise EventError(f"{where}: expected a JSON object, got {type(data).__name__}")
    action = _string(data, "action_name", where, required=True)
    query_id = _string(data, "query_id", where, required=True)
    event: dict[str, object] = {"application": _string(data, "application", where) or APPLICATION,
             "action_name": action, "query_id": query_id,
             "timestamp": _timestamp(data.get("timestamp"), where) or now or utc_now()}
    for name in HASHED:
        value = _string(data, name, where)
        if value:
            event[name] = pseudonym(value, secret)
    message_type = _string(data, "message_type", where)
    if message_type:
        event["message_type"] = message_type
    attributes = data.get("event_attributes")
    if attributes is None:
        if action in CLICK_ACTIONS:
            raise EventError(f"{where}: a {action} needs event_attributes.object.object_id (the clicked hit's _id)")
        return event
    if not isinstance(attributes, dict):
        raise EventError(f"{where}: event_attributes must be an object")
    event["event_attributes"] = _attributes(attributes, action, where)
    return event


def parse_events(body: bytes, secret: str, now: str | None = None, max_events: int = MAX_EVENTS) -> list[dict]:
    """Decode a request body (one event or an array) into validated events; all or nothing.

    Example:
        >>> parse_events(b'[{"action_name": "click", "query_id": "q"}]', "s")
        Traceback (most recent call last):
        ...
        es_rerank.proxy.online_ab.events.EventError: event 1: a click needs event_attributes.object.object_id (the clicked hit's _id)
    """
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EventError(f"the body is not JSON: {exc}") from exc
    items = data if isinstance(data, list) else [data]
    if not items:
        raise EventError("the body is an empty array; send at least one event")
    if len(items) > max_events:
        raise EventError(f"{len(items)} events in one request; send at most {max_events}")
    now = now or utc_now()
    return [validate_event(item, secret, now, f"event {i}") for i, item in enumerate(items, start=1)]


def error_body(status: int, error_type: str, reason: str) -> dict:
    """OpenSearch's error shape, as the proxy uses for errors it makes itself.

    Example:
        >>> error_body(400, "parse_exception", "bad")["error"]["type"]
        'parse_exception'
    """
    return {"error": {"root_cause": [{"type": error_type, "reason": reason}], "type": error_type, "reason": reason},
            "status": status}


def make_events_handler(writer: JsonLinesWriter, secret: str, max_bytes: int = MAX_BODY_BYTES,
                        max_events: int = MAX_EVENTS) -> Callable:
    """An aiohttp handler for `POST /_rerank/events` that appends valid events to `writer`.

    Mount it before any catch-all route: `app.router.add_post(EVENTS_PATH, handler)`.
    Answers 200 `{"accepted": n}`; 400 for a malformed body, 413 past `max_bytes`.
    """
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > max_bytes:
            return web.json_response(error_body(413, "content_too_long_exception",
                                                f"event body of {request.content_length} bytes exceeds {max_bytes}"),
                                     status=413)
        chunks, size = [], 0
        async for chunk in request.content.iter_chunked(1 << 16):  # bounded read, also without Content-Length
            size += len(chunk)
            if size > max_bytes:
                return web.json_response(error_body(413, "content_too_long_exception",
                                                    f"event body exceeds {max_bytes} bytes"), status=413)
            chunks.append(chunk)
        body = b"".join(chunks)
        try:
            events = parse_events(body, secret, max_events=max_events)
        except EventError as exc:
            return web.json_response(error_body(400, "parse_exception", str(exc)), status=400)
        accepted = sum(writer.append(event) for event in events)
        return web.json_response({"accepted": accepted, "dropped": len(events) - accepted})

    return handle


def _attributes(attributes: dict, action: str, where: str) -> dict:
    stored: dict = {}
    obj = attributes.get("object")
    if obj is not None:
        if not isinstance(obj, dict):
            raise EventError(f"{where}: event_attributes.object must be an object")
        object_id = obj.get("object_id")
        if isinstance(object_id, bool) or not isinstance(object_id, (str, int)) or str(object_id) == "":
            raise EventError(f"{where}: event_attributes.object.object_id must be a non-empty string or integer, "
                             f"got {object_id!r}")
        if len(str(object_id)) > _OBJECT_ID:
            raise EventError(f"{where}: event_attributes.object.object_id is longer than {_OBJECT_ID} characters")
        field = obj.get("object_id_field", "_id")
        if not isinstance(field, str) or not field or len(field) > _SHORT:
            raise EventError(f"{where}: event_attributes.object.object_id_field must be a short string")
        stored["object"] = {"object_id": str(object_id), "object_id_field": field}
    elif action in CLICK_ACTIONS:
        raise EventError(f"{where}: a {action} needs event_attributes.object.object_id (the clicked hit's _id)")
    position = attributes.get("position")
    if position is not None:
        ordinal = position.get("ordinal") if isinstance(position, dict) else None
        if isinstance(ordinal, bool) or not isinstance(ordinal, int) or ordinal < 1:
            raise EventError(f"{where}: event_attributes.position.ordinal must be a positive integer "
                             f"(1 = first hit on the page), got {ordinal!r}")
        stored["position"] = {"ordinal": ordinal}
    return stored


def _string(data: dict, name: str, where: str, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise EventError(f"{where}: {name} is required")
        return None
    if not isinstance(value, str):
        raise EventError(f"{where}: {name} must be a string, got {type(value).__name__}")
    if len(value) > _SHORT:
        raise EventError(f"{where}: {name} is longer than {_SHORT} characters")
    return value


def _timestamp(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(f"{where}: timestamp must be an ISO 8601 string")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise EventError(f"{where}: timestamp {value!r} is not ISO 8601, e.g. 2025-01-01T10:00:00Z") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)  # UBI allows a bare time; read it as UTC
    return parsed.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
