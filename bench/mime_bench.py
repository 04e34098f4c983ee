"""How fast MIME messages are built: flowmail's hand-written builder against the standard
library's ``EmailMessage`` (``policy=SMTP``), for a 5 KB HTML + text marketing email.

``python bench/mime_bench.py`` prints both rates (and the rate with DKIM signing);
``messages_built_per_second()`` is what the benchmark table reports.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from flowmail.delivery.dkim import DkimSigner  # noqa: E402
from flowmail.delivery.mime import build_message  # noqa: E402
from flowmail.delivery.model import OutgoingEmail  # noqa: E402

DATE = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)
_ROW = (
    '<tr><td style="padding:8px;font-family:Arial,sans-serif;color:#333">'
    "Item {i}: a product you left in your cart, now 10% off — {name}</td>"
    '<td style="text-align:right"><a href="https://shop.example.com/p/{i}?utm_source=flowmail">'
    "View</a></td></tr>\n"
)


def sample_email(i: int = 0) -> OutgoingEmail:
    """A realistic marketing email: ~5 KB of HTML, its text part, unsubscribe headers."""
    name = f"Zoë {i}"
    rows = "".join(_ROW.format(i=n, name=name) for n in range(24))
    html = f"<html><body><h1>Hello {name}</h1><table>{rows}</table></body></html>"
    text = "\n".join(f"Item {n}: now 10% off — https://shop.example.com/p/{n}" for n in range(24))
    return OutgoingEmail(
        message_id=f"m{i}.r42.s7@mail.example.com",
        idempotency_key=f"m{i}",
        from_address="news@example.com",
        from_name="Example Shop",
        to=f"customer{i}@example.org",
        subject=f"{name}, your cart is waiting 🛒",
        text=text,
        html=html,
        headers={
            "List-Unsubscribe": f"<https://example.com/u/{i}>, <mailto:unsub+{i}@example.com>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Feedback-ID": "cart:abandoned:flowmail:example",
        },
        tags={"workflow": "abandoned_cart", "step": "reminder", "message": f"m{i}"},
    )


def build_with_emailmessage(email: OutgoingEmail) -> bytes:
    """The same message through the standard library, as a baseline."""
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = Address(email.from_name or "", addr_spec=email.from_address)
    msg["To"] = email.to
    msg["Subject"] = email.subject
    msg["Date"] = DATE
    msg["Message-ID"] = f"<{email.message_id}>"
    for name, value in email.headers.items():
        msg[name] = value
    msg.set_content(email.text)
    if email.html is not None:
        msg.add_alternative(email.html, subtype="html")
    return msg.as_bytes()


def _rate(build: Callable[[OutgoingEmail], bytes], seconds: float) -> float:
    emails = [sample_email(i) for i in range(200)]
    count = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for email in emails:
            build(email)
        count += len(emails)
    return count / elapsed


def messages_built_per_second(seconds: float = 2.0) -> float:
    """flowmail's builder, messages per second."""
    return _rate(lambda e: build_message(e, date=DATE), seconds)


def emailmessage_built_per_second(seconds: float = 2.0) -> float:
    """The standard library's EmailMessage, messages per second."""
    return _rate(build_with_emailmessage, seconds)


def signed_messages_built_per_second(seconds: float = 2.0) -> float:
    """flowmail's builder with DKIM (2048-bit RSA, dkimpy) — needs ``openssl``."""
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "dkim.pem"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(key_file), "2048"], check=True, capture_output=True
        )
        signer = DkimSigner("example.com", "bench", key_file.read_bytes())
    return _rate(lambda e: build_message(e, dkim=signer, date=DATE), seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    size = len(build_message(sample_email(), date=DATE))
    ours = messages_built_per_second(args.seconds)
    stdlib = emailmessage_built_per_second(args.seconds)
    signed = signed_messages_built_per_second(args.seconds)
    print(f"message size: {size:,} bytes")
    print(f"flowmail mime.build_message: {ours:>10,.0f} messages/s")
    print(f"stdlib EmailMessage:         {stdlib:>10,.0f} messages/s")
    print(f"speed-up:                    {ours / stdlib:>10,.1f}x")
    print(f"flowmail + DKIM (rsa-2048):  {signed:>10,.0f} messages/s")


if __name__ == "__main__":
    main()
