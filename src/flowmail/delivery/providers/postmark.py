"""Postmark: ``POST /email`` with ``X-Postmark-Server-Token``.

A JSON body with ``From`` (``"Name" <address>``), ``To``, ``Subject``, ``TextBody``,
``HtmlBody``, ``ReplyTo``, ``Headers`` (``[{"Name", "Value"}]``), ``Metadata`` (at most 10
fields, keys up to 20 and values up to 80 characters) and ``MessageStream``. Success is
``200 {"MessageID": ..., "ErrorCode": 0}``. Errors carry a Postmark ``ErrorCode`` in the
JSON, usually with HTTP 422:

- ``406`` inactive recipient (it hard-bounced, complained or was suppressed): permanent,
  hard bounce;
- ``300`` invalid email request, and other request errors: permanent;
- ``10`` bad token, ``100`` maintenance, ``400``/``401`` sender signature missing or not
  confirmed, ``405``/``412``/``413`` account not allowed to send, ``429`` rate limit:
  transient (the installation or the account, not the message).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from flowmail.delivery.headers import (
    check_address,
    check_message_id,
    clean_text,
    custom_headers,
    display_address,
)
from flowmail.delivery.model import OutgoingEmail, SendError, SendResult
from flowmail.delivery.providers.http import HttpProvider, http_error, json_body

PATH = "/email"
INACTIVE_RECIPIENT = 406
INVALID_EMAIL_REQUEST = 300
_TRANSIENT_CODES = frozenset({10, 100, 400, 401, 405, 412, 413, 429})
_METADATA_FIELDS, _METADATA_KEY, _METADATA_VALUE = 10, 20, 80


class PostmarkProvider(HttpProvider):
    name = "postmark"
    default_base_url = "https://api.postmarkapp.com"

    def __init__(
        self,
        *,
        server_token: str,
        message_stream: str = "outbound",
        base_url: str | None = None,
        **options: Any,
    ) -> None:
        if not server_token:
            raise ValueError("Postmark needs a server token")
        self._token = server_token
        self.message_stream = message_stream or "outbound"
        super().__init__(base_url=base_url, **options)

    def payload(self, email: OutgoingEmail) -> dict[str, Any]:
        headers = [
            {"Name": name, "Value": value}
            for name, value in custom_headers(email.headers, email.tags)
        ]
        headers.append({"Name": "Message-ID", "Value": f"<{check_message_id(email.message_id)}>"})
        metadata = {"message_id": email.message_id[:_METADATA_VALUE]}
        for key, value in email.tags.items():
            if len(metadata) >= _METADATA_FIELDS:
                break
            metadata[key[:_METADATA_KEY]] = clean_text(value)[:_METADATA_VALUE]
        body: dict[str, Any] = {
            "From": display_address(email.from_name, email.from_address),
            "To": check_address(email.to),
            "Subject": clean_text(email.subject),
            "TextBody": email.text,
            "Headers": headers,
            "Metadata": metadata,
            "MessageStream": self.message_stream,
        }
        if email.html is not None:
            body["HtmlBody"] = email.html
        if email.reply_to:
            body["ReplyTo"] = check_address(email.reply_to)
        return body

    def build_request(self, email: OutgoingEmail) -> httpx.Request:
        content = json.dumps(self.payload(email), separators=(",", ":")).encode("utf-8")
        return self._client.build_request(
            "POST",
            PATH,
            content=content,
            headers={
                "accept": "application/json",
                "content-type": "application/json",
                "x-postmark-server-token": self._token,
            },
        )

    def result(self, response: httpx.Response) -> SendResult:
        body = json_body(response)
        if body.get("ErrorCode") not in (None, 0):
            raise self.error(response)
        message_id = body.get("MessageID")
        return SendResult(provider=self.name, provider_id=str(message_id) if message_id else None)

    def error(self, response: httpx.Response) -> SendError:
        body = json_body(response)
        raw_code = body.get("ErrorCode")
        detail = str(body.get("Message") or response.text)
        if not isinstance(raw_code, int) or raw_code == 0:
            return http_error(self.name, response.status_code, detail)
        status = response.status_code
        code = f"postmark-{raw_code}"
        if raw_code == INACTIVE_RECIPIENT:
            return http_error(
                self.name, status, detail, code=code, transient=False, hard_bounce=True
            )
        if raw_code in _TRANSIENT_CODES:
            return http_error(self.name, status, detail, code=code, transient=True)
        if status == 429 or status >= 500:
            return http_error(self.name, status, detail, code=code)
        return http_error(self.name, status, detail, code=code, transient=False)
