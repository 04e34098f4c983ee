"""One error shape for every failure, and no stack trace in any response.

Every error body is ``{"error": code, "message": text}``, plus ``problems`` (a list of
``{"field", "in", "problem"}``) when the request itself was wrong. Malformed JSON is a
400; a body or parameter of the wrong shape is a 422 naming each field and why.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("flowmail.api")

UNION_TAGS = {"track", "identify"}  # batch items' types, left out of field names
Responses = dict[int | str, dict[str, Any]]  # documented answers, for route decorators

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answered with its status and the common body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        problems: Sequence[dict[str, str]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = list(problems)
        self.headers = headers


def problem(field: str, text: str, where: str = "body") -> dict[str, str]:
    return {"field": field, "in": where, "problem": text}


def invalid(problems: Sequence[dict[str, str]], status: int = 422) -> ApiError:
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    first = problems[0]
    return ApiError(
        status,
        f"{count} in the request; first: {first['field']}: {first['problem']}",
        problems=problems,
    )


def error_body(status: int, message: str, problems: Sequence[dict[str, str]] = ()) -> bytes:
    body: dict[str, Any] = {"error": CODES.get(status, "error"), "message": message}
    if problems:
        body["problems"] = list(problems)
    return json.dumps(body).encode()


def error_response(
    status: int,
    message: str,
    problems: Sequence[dict[str, str]] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": CODES.get(status, "error"), "message": message}
    if problems:
        body["problems"] = list(problems)
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def field_name(loc: Sequence[str | int]) -> tuple[str, str]:
    """``("body", "batch", 3, "track", "timestamp")`` -> ``("batch[3].timestamp", "body")``
    (the tag of a tagged union, after a list index, is not a field)."""
    where = str(loc[0]) if loc else "body"
    text = ""
    for index, part in enumerate(loc[1:], start=1):
        if part in UNION_TAGS and isinstance(loc[index - 1], int) and index + 1 < len(loc):
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or where, where


def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    malformed = [e for e in errors if e.get("type") == "json_invalid"]
    if malformed:
        why = (malformed[0].get("ctx") or {}).get("error", "cannot be parsed")
        return error_response(400, f"the body is not valid JSON: {why}")
    problems = []
    for error in errors:
        field, where = field_name(tuple(error.get("loc", ())))
        if str(error.get("type", "")).startswith("union_tag_"):
            field += ".type"  # the item's "type" is missing or not one we take
        problems.append(problem(field, _message(error), where))
    return error_response(422, invalid(problems).message, problems)


def _message(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "is invalid"))
    if error.get("type") == "extra_forbidden":
        return "unknown field (not allowed here)"
    if error.get("type") == "missing":
        return "is required"
    ctx = error.get("ctx") or {}
    if error.get("type") == "union_tag_not_found":
        return "is required"
    if error.get("type") == "union_tag_invalid":
        return f"must be one of {ctx.get('expected_tags')}, not {ctx.get('tag')!r}"
    return message.removeprefix("Value error, ")


def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.problems, exc.headers)


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return error_response(exc.status_code, message, headers=exc.headers)


def _database_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database error in %s %s: %s", request.method, request.url.path, exc)
    return error_response(
        503, "the database is not available; try again shortly", headers={"Retry-After": "1"}
    )


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OperationalError, _database_down)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


class CatchAll:
    """Outermost middleware: an unhandled exception is logged with its traceback and
    answered with a plain 500; the traceback never leaves the server."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await send_error(send, 500, "internal error; it has been logged")


async def send_error(
    send: Send, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = error_body(status, message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
