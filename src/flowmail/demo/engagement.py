"""What mail providers and recipients do with the demo's sent emails: pure.

:func:`react` turns one sent message into the provider events a generic webhook would
carry (delivered, opened, clicked, bounced, complained, unsubscribed; the body items of
:mod:`flowmail.webhooks.generic`) and, for some clicks, the purchase that followed.

- An address that was mistyped at sign-up bounces hard; about 1 % of the others bounce
  soft (a full mailbox); every other email is delivered.
- Whether a person opens and clicks depends on how keen the contact is
  (``Contact.engagement``) and on the journey (a receipt is opened more than a
  re-engagement email). Apple Mail fetches every email's images when it arrives (an
  open by "Mozilla/5.0" whether anyone reads it or not), and Gmail and Yahoo open
  through their image proxies, as they do in the wild.
- A few recipients unsubscribe (0.6 %) or report spam (0.08 %, under the 0.1 % alert line).
- A quarter of the clicks lead to a purchase: of the cart the email was about, or of
  something else.

Times are compressed like the rest of the demo: each event falls between the message's
real ``sent_at`` and ``until`` (when the demo reacts), in the order the real ones
would happen (delivered, opened, clicked, purchase), never in the future. People open
from ``READ_AFTER`` after the send on: an open within a second or two of the send is
taken for a machine's (``automated_open_seconds``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flowmail.demo.chance import unit
from flowmail.demo.traffic import PRODUCTS, Call, Contact, iso, purchase

SOFT_BOUNCE = 0.01
UNSUBSCRIBE = 0.006
COMPLAINT = 0.0008
PURCHASE_AFTER_CLICK = 0.25
READ_AFTER = timedelta(seconds=5)  # flowmail takes opens sooner after sending for machines'
APPLE_PREFETCH = "Mozilla/5.0"  # Apple Mail Privacy Protection, on delivery
USER_AGENTS = {  # a person opening the email, by mail client
    "gmail": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 "
    "(via ggpht.com GoogleImageProxy)",
    "yahoo": "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
    "outlook": "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
    "apple": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148",
    "other": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0",
}  # fmt: skip
LINKS = {  # what a reader clicks in each example template
    "welcome_01": "https://example.com/start",
    "educational_01": "https://example.com/guides/quick-start",
    "engaged_user": "https://example.com/guides/advanced",
    "re_engagement": "https://example.com/blog/whats-new",
    "cart_reminder": "https://example.com/cart?id={cart}",
    "standard_offer": "https://example.com/cart?id={cart}&code=COMEBACK10",
    "vip_offer": "https://example.com/cart?id={cart}&offer=vip-express",
    "thanks_plain": "https://example.com/orders/{order}",
    "thanks_discount": "https://example.com/shop?code=THANKS10",
    "review_request": "https://example.com/review?order={order}&stars=5",
    "trial_three_days": "https://example.com/billing/upgrade?plan=pro",
    "trial_last_day": "https://example.com/billing/upgrade",
    "vip_invite": "https://example.com/circle/join",
    "weekly_digest_offer": "https://example.com/digest/subscribe",
}
KEENNESS = {  # how much more (or less) a journey's emails are opened than the average
    "post_purchase": 1.4,
    "trial_ending": 1.2,
    "cart_abandonment": 1.1,
    "welcome_series": 1.0,
    "re_engagement": 0.8,
}


@dataclass(frozen=True)
class SentMessage:
    """What the demo needs of a message from ``GET /v1/messages``."""

    id: str
    contact_id: str
    workflow_id: str
    step_id: str
    template: str | None
    to_address: str | None
    created_at: datetime
    sent_at: datetime

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> SentMessage:
        created = _aware(str(row["created_at"]))
        sent = row.get("sent_at")
        return cls(
            id=str(row["id"]),
            contact_id=str(row["contact_id"]),
            workflow_id=str(row["workflow_id"]),
            step_id=str(row["step_id"]),
            template=row.get("template"),
            to_address=row.get("to_address"),
            created_at=created,
            sent_at=_aware(str(sent)) if sent else created,
        )


def _aware(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Reaction:
    events: tuple[dict[str, Any], ...]  # generic webhook items
    purchase: Call | None = None

    def kinds(self) -> Counter[str]:
        return Counter(str(e["type"]) for e in self.events)


def react(seed: int, contact: Contact, message: SentMessage, until: datetime) -> Reaction:
    """The provider events (and maybe a purchase) that follow ``message``, at or before
    ``until``; people open from ``READ_AFTER`` after the send (give them that long)."""

    def chance(*parts: object) -> float:
        return unit(seed, message.id, *parts)

    def later(start: datetime, fraction: float) -> datetime:
        """``fraction`` of the way from ``start`` to ``until``."""
        return start + max(until - start, timedelta(0)) * fraction

    def event(kind: str, at: datetime, label: str = "", **extra: Any) -> dict[str, Any]:
        return {
            "type": kind,
            "id": f"demo-{seed}-{message.id}-{label or kind}",
            "message_id": message.id,
            "email": message.to_address,
            "at": iso(at),
            **extra,
        }

    arrived = later(message.sent_at, 0.002 + 0.01 * chance("arrived"))
    if contact.bad_address:
        reason = f"550 5.1.1 <{message.to_address}>: user unknown"
        bounce = event("bounced", arrived, bounce_type="hard", status="5.1.1", reason=reason)
        return Reaction((bounce,))
    if chance("soft") < SOFT_BOUNCE:
        reason = "452 4.2.2 mailbox full"
        return Reaction(
            (event("bounced", arrived, bounce_type="soft", status="4.2.2", reason=reason),)
        )
    events = [event("delivered", arrived)]
    if contact.mailbox == "apple":
        events.append(event("opened", arrived, "prefetch", user_agent=APPLE_PREFETCH))
    keenness = KEENNESS.get(message.workflow_id, 1.0)
    opened = chance("open") < min(0.95, (0.08 + 0.6 * contact.engagement) * keenness)
    reading = min(message.sent_at + READ_AFTER, until)
    read = later(reading, 0.02 + 0.5 * chance("read"))
    agent = USER_AGENTS[contact.mailbox]
    purchase_call = None
    if opened:
        events.append(event("opened", read, user_agent=agent))
        if chance("again") < 0.25:
            again = later(read, 0.5 * chance("again", "at"))
            events.append(event("opened", again, "opened-again", user_agent=agent))
        if chance("click") < 0.1 + 0.35 * contact.engagement:
            clicked = later(read, 0.3 * chance("click", "at"))
            url = click_url(contact, message)
            events.append(event("clicked", clicked, url=url, user_agent=agent))
            if chance("buy") < PURCHASE_AFTER_CLICK:
                bought = later(clicked, 0.3 + 0.6 * chance("buy", "at"))
                purchase_call = _purchase(seed, contact, message, bought)
    fate = chance("fate")
    if fate < COMPLAINT:
        events.append(event("complained", later(reading, 0.3 + 0.6 * chance("fate", "at"))))
    elif fate < COMPLAINT + UNSUBSCRIBE:
        events.append(event("unsubscribed", later(read, 0.95 * chance("fate", "at"))))
    return Reaction(tuple(events), purchase_call)


def click_url(contact: Contact, message: SentMessage) -> str:
    cart = contact.cart_before(message.created_at)
    order = contact.order_before(message.created_at)
    pattern = LINKS.get(message.template or "", "https://example.com/")
    return pattern.format(cart=cart.id if cart else "", order=order.id if order else "")


def _purchase(seed: int, contact: Contact, message: SentMessage, at: datetime) -> Call:
    order_id = f"o-{seed}-{contact.index}-m{message.id[:12]}"
    cart = contact.cart_before(message.created_at)
    properties: dict[str, Any]
    if message.workflow_id == "cart_abandonment" and cart is not None:
        properties = {**purchase(order_id, cart.items, cart.total), "cart_id": cart.id}
    else:
        name, price = PRODUCTS[int(unit(seed, message.id, "product") * len(PRODUCTS))]
        item = {"name": name, "price": price, "quantity": 1}
        properties = purchase(order_id, [item], price)
    properties["source"] = "email"
    message_id = f"demo-{seed}-{contact.index}-buy-{message.id}"
    return Call(at, contact.id, message_id, "purchase_completed", properties)
