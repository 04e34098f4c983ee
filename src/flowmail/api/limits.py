"""Request size limits, enforced before a body is parsed.

A declared ``Content-Length`` over the limit is refused with 413 without reading the
body; a body without one (chunked) is counted while it is read and refused as soon as
it passes the limit. What is accepted is handed on, whole, to the application.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowmail.api.errors import send_error

LimitFor = Callable[[str], int]  # request path -> most bytes allowed


class BodyLimit:
    def __init__(self, app: ASGIApp, limit_for: LimitFor) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared == -1:
            await send_error(send, 400, "the Content-Length header is not a number")
            return
        if declared is not None and declared > limit:
            await send_error(send, 413, _too_large(declared, limit), [(b"connection", b"close")])
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await send_error(
                    send, 413, _too_large(size, limit, counted=True), [(b"connection", b"close")]
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)


def _content_length(scope: Scope) -> int | None:
    """The declared length, ``None`` if not declared, -1 if not a number."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
            return length if length >= 0 else -1
    return None


def _too_large(size: int, limit: int, counted: bool = False) -> str:
    amount = f"more than {limit:,}" if counted else f"{size:,}"
    return f"the request body is {amount} bytes; the most accepted here is {limit:,} bytes"


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
