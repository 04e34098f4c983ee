"""SendGrid v3 Mail Send: ``POST /v3/mail/send`` with ``Authorization: Bearer <key>``.

The JSON body has ``personalizations`` (one, with our recipient), ``from``, ``reply_to``,
``subject``, ``content`` (text/plain first, then text/html), ``headers`` and ``custom_args``
(our tags, plus ``message_id``, which SendGrid echoes in its event webhooks). SendGrid answers
``202 Accepted`` with the message id in the ``X-Message-Id`` header; errors are JSON
``{"errors": [{"message", "field", "help"}]}``. SendGrid builds the MIME itself (and signs
it), so DKIM here is SendGrid's; it refuses to let a request set ``To``, ``From``,
``Subject``, ``Reply-To``, ``Cc``, ``Bcc``, ``Content-Type``, ``Content-Transfer-Encoding``,
``DKIM-Signature``, ``Received``, ``X-SG-ID`` or ``X-SG-EID`` as headers.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from flowmail.delivery.headers import (
    check_address,
    check_message_id,
    clean_name,
    clean_text,
    custom_headers,
)
from flowmail.delivery.model import OutgoingEmail, SendError, SendResult
from flowmail.delivery.providers.http import HttpProvider, http_error, json_body

PATH = "/v3/mail/send"
_SENDGRID_RESERVED = frozenset({"x-sg-id", "x-sg-eid"})


class SendGridProvider(HttpProvider):
    name = "sendgrid"
    default_base_url = "https://api.sendgrid.com"

    def __init__(self, *, api_key: str, base_url: str | None = None, **options: Any) -> None:
        if not api_key:
            raise ValueError("SendGrid needs an API key")
        self._api_key = api_key
        super().__init__(base_url=base_url, **options)

    def payload(self, email: OutgoingEmail) -> dict[str, Any]:
        sender: dict[str, str] = {"email": check_address(email.from_address)}
        if name := clean_name(email.from_name):
            sender["name"] = name
        headers = {
            name: value
            for name, value in custom_headers(email.headers, email.tags)
            if name.lower() not in _SENDGRID_RESERVED
        }
        headers["Message-ID"] = f"<{check_message_id(email.message_id)}>"
        custom_args = {key: clean_text(value) for key, value in email.tags.items()}
        custom_args.setdefault("message_id", email.message_id)
        content = [{"type": "text/plain", "value": email.text}]
        if email.html is not None:
            content.append({"type": "text/html", "value": email.html})
        body: dict[str, Any] = {
            "personalizations": [{"to": [{"email": check_address(email.to)}]}],
            "from": sender,
            "subject": clean_text(email.subject) or " ",
            "content": content,
            "headers": headers,
            "custom_args": custom_args,
        }
        if email.reply_to:
            body["reply_to"] = {"email": check_address(email.reply_to)}
        return body

    def build_request(self, email: OutgoingEmail) -> httpx.Request:
        content = json.dumps(self.payload(email), separators=(",", ":")).encode("utf-8")
        return self._client.build_request(
            "POST",
            PATH,
            content=content,
            headers={
                "authorization": f"Bearer {self._api_key}",
                "content-type": "application/json",
            },
        )

    def result(self, response: httpx.Response) -> SendResult:
        return SendResult(provider=self.name, provider_id=response.headers.get("x-message-id"))

    def error(self, response: httpx.Response) -> SendError:
        errors = json_body(response).get("errors")
        if isinstance(errors, list) and errors:
            detail = "; ".join(
                str(item.get("message", item)) if isinstance(item, dict) else str(item)
                for item in errors
            )
        else:
            detail = response.text
        return http_error(self.name, response.status_code, detail)
