"""JSON error answers, so every refusal tells a client (and its owner) what happened."""

from __future__ import annotations

import json
import math

from aiohttp import web


def json_error(
    status: int,
    error: str,
    message: str,
    *,
    retry_after: float | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, object] | None = None,
) -> web.Response:
    """A JSON error body `{"error", "message", "status", **extra}` with the given status."""
    body = {"error": error, "message": message, "status": status, **(extra or {})}
    all_headers = dict(headers or {})
    if retry_after is not None:
        all_headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return web.Response(
        status=status,
        text=json.dumps(body, indent=1, sort_keys=False) + "\n",
        content_type="application/json",
        headers=all_headers,
    )


def from_http_exception(exc: web.HTTPException, request: web.Request) -> web.Response | None:
    """aiohttp's own plain-text refusal (404, 405, 413, ...) as a JSON body; None if not one."""
    if exc.status < 400 or exc.content_type == "application/json":
        return None
    headers = {
        name: value
        for name, value in exc.headers.items()
        if name.lower() in ("allow", "retry-after", "www-authenticate")
    }
    return json_error(
        exc.status,
        exc.reason.lower().replace(" ", "_"),
        _message(exc, request),
        headers=headers,
    )


def _message(exc: web.HTTPException, request: web.Request) -> str:
    if exc.status == 405:
        allowed = exc.headers.get("Allow", "GET, HEAD")
        return f"method {request.method} is not allowed here; allowed: {allowed}"
    if exc.status == 404:
        return f"{request.path} is not an endpoint the bridge serves"
    return exc.text or exc.reason
