"""Mailgun: ``POST /v3/{domain}/messages.mime`` with HTTP basic auth ``api:<key>``.

A ``multipart/form-data`` body with ``to`` (our recipient) and ``message`` (our MIME bytes, as
a file), plus ``v:<name>`` variables for our tags and the Message-ID (Mailgun returns them in
its webhooks as ``user-variables``). Mailgun answers ``200 {"id": "<...>", "message":
"Queued. Thank you."}``; errors are ``{"message": ...}`` with the HTTP status. A ``404``
means the sending domain is not on the account (configuration, so transient).
US accounts use ``https://api.mailgun.net``, EU accounts ``https://api.eu.mailgun.net``.
"""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import quote

import httpx

from flowmail.delivery.headers import check_address, clean_text
from flowmail.delivery.mime import build_message
from flowmail.delivery.model import OutgoingEmail, SendError, SendResult
from flowmail.delivery.providers.http import HttpProvider, http_error, json_body

US_BASE_URL = "https://api.mailgun.net"
EU_BASE_URL = "https://api.eu.mailgun.net"
_VARIABLE = re.compile(r"[^A-Za-z0-9_-]")


class MailgunProvider(HttpProvider):
    name = "mailgun"
    default_base_url = US_BASE_URL

    def __init__(
        self, *, api_key: str, domain: str, base_url: str | None = None, **options: Any
    ) -> None:
        if not api_key or not domain:
            raise ValueError("Mailgun needs an API key and a sending domain")
        token = base64.b64encode(f"api:{api_key}".encode()).decode("ascii")
        self._authorization = f"Basic {token}"
        self.domain = domain
        super().__init__(base_url=base_url, **options)

    @property
    def path(self) -> str:
        return f"/v3/{quote(self.domain, safe='')}/messages.mime"

    def form(self, email: OutgoingEmail) -> dict[str, str]:
        fields = {"to": check_address(email.to), "v:message_id": email.message_id}
        for key, value in email.tags.items():
            fields[f"v:{_VARIABLE.sub('_', key)}"] = clean_text(value)
        return fields

    def build_request(self, email: OutgoingEmail) -> httpx.Request:
        message = build_message(email, dkim=self._dkim, date=self._clock.now())
        request = self._client.build_request(
            "POST",
            self.path,
            data=self.form(email),
            files={"message": ("message.mime", message, "message/rfc822")},
            headers={"authorization": self._authorization},
        )
        return request

    def result(self, response: httpx.Response) -> SendResult:
        message_id = str(json_body(response).get("id") or "").strip("<>")
        return SendResult(provider=self.name, provider_id=message_id or None)

    def error(self, response: httpx.Response) -> SendError:
        detail = str(json_body(response).get("message") or response.text)
        if response.status_code == 404:
            return http_error(self.name, 404, detail, code="domain", transient=True)
        return http_error(self.name, response.status_code, detail)
