"""A stored DeviceList is checked as a live answer is before it may be served.

The warm-store file is data on a card that may have been cut short, hand-edited or
written by another version: nothing in it is trusted. A live answer is served only if it
is a 2xx with a JSON body that holds a device list, with headers the PVS could have sent;
the stored one must be all that too, and its fields of the right types. Anything else is
a ValueError naming what is wrong (the store logs it once and starts cold).
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

from bridge.pvs.answer import Answer, replayable_headers
from bridge.pvs.client import answer_problem
from bridge.pvs.devices import legacy_snapshot

# RFC 9110 token characters, for header names.
TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def document_fields(document: Any) -> dict[str, Any]:
    """The stored document as a JSON object (ValueError for `[]`, `null`, a number, ...)."""
    if not isinstance(document, dict):
        raise ValueError(f"not a JSON object but {type(document).__name__}")
    return document


def number(document: dict[str, Any], name: str, default: float | None = None) -> float:
    """A finite number field (bools are not numbers here)."""
    value = document.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} is not a finite number: {value!r}")
    return float(value)


def stored_answer(document: dict[str, Any], fetched_at: float) -> Answer:
    """The stored answer, checked as a live one would be (ValueError naming the problem)."""
    status = document.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 299:
        raise ValueError(f"status {status!r} is not a 2xx answer")
    content_type = document.get("content_type")
    if content_type is not None and not (isinstance(content_type, str) and clean(content_type)):
        raise ValueError("content_type is not a plain header value")
    body_text = document.get("body")
    if not isinstance(body_text, str):
        raise ValueError("body is not base64 text")
    try:
        body = base64.b64decode(body_text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("body is not valid base64") from None
    elapsed = number(document, "elapsed", 0.0)
    answer = Answer(
        status=status,
        body=body,
        content_type=content_type,
        headers=headers(document.get("headers", [])),
        fetched_at=fetched_at,
        fetched_wall=number(document, "fetched_wall"),
        elapsed=max(0.0, elapsed),
    )
    problem = answer_problem(answer, expect_json=True)
    if problem is not None:
        raise ValueError(f"holds {problem}")
    if legacy_snapshot(answer) is None:
        raise ValueError("holds no device list")
    return answer


def headers(raw: Any) -> tuple[tuple[str, str], ...]:
    """Stored header pairs, each a name and a value the PVS could have sent, and only
    those a live answer keeps (no Content-Length, Connection, Set-Cookie, ...)."""
    if not isinstance(raw, list):
        raise ValueError("headers is not a list")
    pairs: list[tuple[str, str]] = []
    for item in raw:
        if not (
            isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)
        ):
            raise ValueError(f"a header is not a [name, value] pair: {item!r}")
        name, value = item
        if not name or not set(name) <= TOKEN or not clean(value):
            raise ValueError(f"header {name!r} is not a plain header")
        pairs.append((name, value))
    kept = tuple(pairs)
    if replayable_headers(list(kept)) != kept:
        dropped = sorted({n for n, _ in kept} - {n for n, _ in replayable_headers(list(kept))})
        raise ValueError(f"holds headers a live answer never keeps: {', '.join(dropped)}")
    return kept


def clean(value: str) -> bool:
    """A header value without line breaks or other control characters (tab allowed)."""
    return all(ch == "\t" or (ch >= " " and ch != "\x7f") for ch in value)
