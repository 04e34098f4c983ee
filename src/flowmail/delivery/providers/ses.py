"""Amazon SES API v2 ``SendEmail`` with raw content, signed with Signature Version 4.

``POST /v2/email/outbound-emails`` on ``https://email.{region}.amazonaws.com``, a JSON body
with ``Content.Raw.Data`` (our MIME bytes, base64), ``Destination.ToAddresses``,
``FromEmailAddress``, ``EmailTags`` and optionally ``ConfigurationSetName``; the answer is
``200 {"MessageId": ...}``. Errors name their type in the ``x-amzn-ErrorType`` header (or
``__type`` in the body): ``MessageRejected`` and ``BadRequestException`` are permanent;
throttling and account or configuration states (``TooManyRequestsException``,
``LimitExceededException``, ``SendingPausedException``, ``AccountSuspendedException``,
``MailFromDomainNotVerifiedException``, ``NotFoundException``) are transient.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import httpx

from flowmail.delivery.headers import check_address
from flowmail.delivery.mime import build_message
from flowmail.delivery.model import OutgoingEmail, SendError, SendResult
from flowmail.delivery.providers import sigv4
from flowmail.delivery.providers.http import HttpProvider, http_error, json_body

PATH = "/v2/email/outbound-emails"
SERVICE = "ses"
_TRANSIENT_TYPES = frozenset(
    {
        "TooManyRequestsException",
        "ThrottlingException",
        "LimitExceededException",
        "SendingPausedException",
        "AccountSuspendedException",
        "MailFromDomainNotVerifiedException",
        "NotFoundException",
        "InternalFailure",
        "ServiceUnavailable",
    }
)
_TAG_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def _tag(text: str) -> str:
    """SES tag names and values: ASCII letters, digits, ``_`` and ``-``, at most 256."""
    return _TAG_CHARS.sub("_", text)[:256] or "_"


def error_type(response: httpx.Response, body: dict[str, Any]) -> str:
    raw = response.headers.get("x-amzn-errortype") or str(body.get("__type") or "")
    return raw.split(":", 1)[0].rsplit("#", 1)[-1]


class SesProvider(HttpProvider):
    name = "ses"

    def __init__(
        self,
        *,
        access_key: str,
        secret_key: str,
        region: str,
        session_token: str = "",
        configuration_set: str = "",
        base_url: str | None = None,
        **options: Any,
    ) -> None:
        if not (access_key and secret_key and region):
            raise ValueError("SES needs an access key, a secret key and a region")
        self.region = region
        self._access_key, self._secret_key = access_key, secret_key
        self._session_token = session_token
        self.configuration_set = configuration_set
        super().__init__(base_url=base_url or f"https://email.{region}.amazonaws.com", **options)

    def payload(self, email: OutgoingEmail) -> dict[str, Any]:
        raw = build_message(email, dkim=self._dkim, date=self._clock.now())
        body: dict[str, Any] = {
            "FromEmailAddress": check_address(email.from_address),
            "Destination": {"ToAddresses": [check_address(email.to)]},
            "Content": {"Raw": {"Data": base64.b64encode(raw).decode("ascii")}},
        }
        if email.tags:
            body["EmailTags"] = [
                {"Name": _tag(key), "Value": _tag(value)} for key, value in email.tags.items()
            ]
        if self.configuration_set:
            body["ConfigurationSetName"] = self.configuration_set
        return body

    def build_request(self, email: OutgoingEmail) -> httpx.Request:
        content = json.dumps(self.payload(email), separators=(",", ":")).encode("utf-8")
        stamp = sigv4.amz_date(self._clock.now())
        headers = {"content-type": "application/json", "x-amz-date": stamp}
        if self._session_token:
            headers["x-amz-security-token"] = self._session_token
        request = self._client.build_request("POST", PATH, content=content, headers=headers)
        signed = {**headers, "host": request.headers["host"]}
        request.headers["authorization"] = sigv4.authorization(
            method="POST",
            path=request.url.raw_path.decode("ascii").split("?", 1)[0],
            query=request.url.query.decode("ascii"),
            headers=signed,
            body=content,
            access_key=self._access_key,
            secret_key=self._secret_key,
            region=self.region,
            service=SERVICE,
            stamp=stamp,
        )
        return request

    def result(self, response: httpx.Response) -> SendResult:
        message_id = json_body(response).get("MessageId")
        return SendResult(provider=self.name, provider_id=str(message_id) if message_id else None)

    def error(self, response: httpx.Response) -> SendError:
        body = json_body(response)
        kind = error_type(response, body)
        detail = f"{kind}: {body.get('message') or body.get('Message') or response.text}"
        transient = True if kind in _TRANSIENT_TYPES else None
        return http_error(
            self.name, response.status_code, detail, code=kind or None, transient=transient
        )
