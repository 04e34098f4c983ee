"""The demo's traffic: contacts and what they do, as Segment calls, from a seed.

:func:`build_plan` is pure: the same seed, number of contacts and window give the same
contacts and calls. Each contact is one of a mix that feeds the example workflows:

- sign-ups (``user_registered``; most from ``newsletter_signup``: the welcome series);
- shoppers who leave carts (``cart_abandoned`` with ``cart_id``, ``cart_total``,
  ``items``), some buying that cart within the hour or later (cart abandonment);
- buyers (``purchase_completed`` with ``order_id``, ``total``, ``revenue``, ``product``:
  post-purchase);
- trials (``trial_started`` and a ``trial_ends_at`` trait: trial ending), some
  subscribing (``subscription_started``, which ends the reminders);
- dormant newsletter readers who open (``email_opened``) and click newsletters again,
  some three times in a week (re-engagement).

A small share of sign-ups typed an address that bounces (``Contact.bad_address``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flowmail.demo.chance import between, moment, pick, share, unit, weighted

MARGIN = timedelta(minutes=5)  # the newest planned event is this long before now

ZONES = (
    ("America/New_York", 18.0),
    ("America/Chicago", 8.0),
    ("America/Los_Angeles", 10.0),
    ("America/Sao_Paulo", 6.0),
    ("Europe/London", 12.0),
    ("Europe/Paris", 10.0),
    ("Europe/Berlin", 10.0),
    ("Asia/Kolkata", 8.0),
    ("Asia/Tokyo", 8.0),
    ("Australia/Sydney", 6.0),
)
DOMAINS = (("example.com", 60.0), ("example.org", 20.0), ("example.net", 15.0), ("mail.test", 5.0))
MAILBOXES = (("gmail", 40.0), ("apple", 30.0), ("outlook", 15.0), ("yahoo", 7.0), ("other", 8.0))
FIRST_NAMES = (
    "Ana", "Ben", "Cleo", "Dana", "Eli", "Fay", "Gus", "Hana", "Ivy", "Jun", "Kai", "Lea",
    "Max", "Noa", "Olga", "Pete", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Wes",
    "Xena", "Yusuf", "Zoe", "Amir", "Bea", "Carlos", "Devi", "Emma", "Femi", "Grace", "Hugo",
    "Ines", "Jonas", "Kenji", "Lina", "Mateo", "Nia",
)  # fmt: skip
LAST_NAMES = (
    "Silva", "Smith", "Garcia", "Müller", "Rossi", "Nguyen", "Kim", "Okafor", "Novak",
    "Dubois", "Tanaka", "Khan", "Haddad", "Jensen", "Costa", "Patel", "Moreau", "Berg",
    "Walsh", "Ivanova", "Santos", "Cohen", "Yilmaz", "Lopez", "Sato", "Mensah",
)  # fmt: skip
PRODUCTS = (
    ("Espresso machine", 329.0), ("Burr grinder", 149.0), ("Gooseneck kettle", 79.0),
    ("Pour-over set", 45.0), ("Mugs, set of 4", 36.0), ("Coffee beans 1 kg", 24.0),
    ("Paper filters", 6.5), ("Digital scale", 29.0), ("Milk frother", 59.0),
    ("Cleaning tablets", 9.9), ("Travel tumbler", 27.0), ("Barista course", 120.0),
)  # fmt: skip
SOURCES = (("newsletter_signup", 80.0), ("webinar", 10.0), ("referral", 6.0), ("partner", 4.0))
OTHER_SOURCES = (("newsletter_signup", 40.0), ("checkout", 40.0), ("import", 20.0))

# segment -> (share of contacts, prime of its sequence): see chance.share
SEGMENTS = {
    "bad_address": (0.03, 2),
    "registered": (0.55, 3),
    "shopper": (0.35, 5),
    "buyer": (0.20, 7),
    "trial": (0.18, 11),
    "dormant": (0.15, 13),
    "vip": (0.08, 17),
}
# when newsletters go out (UTC): weekday (Monday 0), hour, campaign name
CAMPAIGNS = ((1, 14, "newsletter"), (4, 16, "product-update"), (6, 18, "weekend-reads"))


@dataclass(frozen=True)
class Call:
    """One Segment call of the plan: an identify (``event`` None) or a track."""

    at: datetime
    user_id: str
    message_id: str
    event: str | None
    data: Mapping[str, Any]  # the traits or the properties

    @property
    def name(self) -> str:
        return self.event or "identify"

    def body(self, stamped: bool = True) -> dict[str, Any]:
        """The call as ``POST /v1/batch`` takes it; unstamped: the server's time."""
        body: dict[str, Any] = {"userId": self.user_id, "messageId": self.message_id}
        if self.event is None:
            body.update(type="identify", traits=dict(self.data))
        else:
            body.update(type="track", event=self.event, properties=dict(self.data))
        if stamped:
            body["timestamp"] = iso(self.at)
        return body


@dataclass(frozen=True)
class Cart:
    id: str
    at: datetime
    total: float
    items: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class Order:
    id: str
    at: datetime
    total: float
    product: str


@dataclass(frozen=True)
class Contact:
    index: int
    id: str
    email: str
    first_name: str
    timezone: str
    mailbox: str  # whose mail client opens the email: gmail, apple, outlook, yahoo, other
    engagement: float  # in [0, 1): how keen the contact is to open and click
    bad_address: bool = False  # every email to it bounces
    carts: tuple[Cart, ...] = ()
    orders: tuple[Order, ...] = ()

    def cart_before(self, at: datetime) -> Cart | None:
        return max((c for c in self.carts if c.at <= at), key=lambda c: c.at, default=None)

    def order_before(self, at: datetime) -> Order | None:
        return max((o for o in self.orders if o.at <= at), key=lambda o: o.at, default=None)


@dataclass(frozen=True)
class Plan:
    seed: int
    start: datetime
    end: datetime
    contacts: tuple[Contact, ...]
    calls: tuple[Call, ...]  # contact by contact, each contact's in time order

    def by_id(self) -> dict[str, Contact]:
        return {c.id: c for c in self.contacts}

    def counts(self) -> dict[str, int]:
        """Calls by event name (``identify`` for identify calls)."""
        return dict(sorted(Counter(call.name for call in self.calls).items()))

    def in_time_order(self) -> list[Call]:
        return sorted(self.calls, key=lambda c: (c.at, c.user_id, c.message_id))

    def batches(self, size: int) -> Iterator[list[Call]]:
        """Batches of about ``size`` calls, each holding whole contacts, so that a worker
        sees each contact's history at once."""
        batch: list[Call] = []
        for index, call in enumerate(self.calls):
            batch.append(call)
            following = self.calls[index + 1] if index + 1 < len(self.calls) else None
            if len(batch) >= size and (following is None or following.user_id != call.user_id):
                yield batch
                batch = []
        if batch:
            yield batch


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_plan(seed: int, contacts: int, now: datetime, days: float) -> Plan:
    """``contacts`` contacts and their calls over the ``days`` before ``now``."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    end = now.astimezone(UTC) - MARGIN
    start = end - timedelta(days=days)
    people: list[Contact] = []
    calls: list[Call] = []
    for index in range(contacts):
        person, theirs = contact_traffic(seed, index, start, end)
        people.append(person)
        calls.extend(theirs)
    return Plan(seed, start, end, tuple(people), tuple(calls))


def member(seed: int, index: int, segment: str) -> bool:
    fraction, prime = SEGMENTS[segment]
    return share(seed, index, segment, prime) < fraction


@dataclass
class _Journey:
    """One contact's calls as they are planned."""

    seed: int
    index: int
    user_id: str
    zone: str
    end: datetime
    calls: list[Call] = field(default_factory=list)
    carts: list[Cart] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)

    def add(self, at: datetime, purpose: str, event: str | None, data: Mapping[str, Any]) -> None:
        message_id = f"demo-{self.seed}-{self.index}-{purpose}"
        self.calls.append(Call(at, self.user_id, message_id, event, data))

    def chance(self, *parts: object) -> float:
        return unit(self.seed, self.index, *parts)

    def when(self, start: datetime, *parts: object) -> datetime | None:
        """A waking-hours time between ``start`` and the end of the window, if any."""
        if start >= self.end:
            return None
        return moment(self.seed, start, self.end, self.zone, self.index, *parts)


def contact_traffic(
    seed: int, index: int, start: datetime, end: datetime
) -> tuple[Contact, list[Call]]:
    """One contact and everything it does between ``start`` and ``end``."""
    first = pick(seed, FIRST_NAMES, index, "first")
    last = pick(seed, LAST_NAMES, index, "last")
    zone = weighted(seed, ZONES, index, "zone")
    domain = weighted(seed, DOMAINS, index, "domain")
    local = f"{first}.{last}".lower().replace("ü", "ue")
    person = Contact(
        index=index,
        id=f"demo-{seed}-{index:05d}",
        email=f"{local}+{seed}-{index}@{domain}",
        first_name=first,
        timezone=zone,
        mailbox=weighted(seed, MAILBOXES, index, "mailbox"),
        engagement=unit(seed, index, "engagement") ** 1.5,
        bad_address=member(seed, index, "bad_address"),
    )
    journey = _Journey(seed, index, person.id, zone, end)
    dormant = member(seed, index, "dormant")
    registered = person.bad_address or member(seed, index, "registered")
    if dormant:
        seen = start + timedelta(hours=between(seed, 0, 6, index, "seen"))
    else:
        seen = moment(seed, start, end, zone, index, "seen")
    source = _source(seed, index, registered, person.bad_address)
    journey.add(seen, "identify", None, _traits(seed, index, person, last, source, dormant))
    if registered:
        signup = seen + timedelta(seconds=between(seed, 2, 40, index, "signup"))
        journey.add(signup, "signup", "user_registered", {"source": source, "form": "footer"})
    after = seen + timedelta(minutes=5)
    if member(seed, index, "shopper"):
        _shop(journey, after)
    if member(seed, index, "buyer"):
        _buy(journey, after)
    if member(seed, index, "trial"):
        _trial(journey, seen + timedelta(minutes=1))
    if dormant:
        _read(journey, seen, start)
    journey.calls.sort(key=lambda c: (c.at, c.message_id))
    person = Contact(
        **{**person.__dict__, "carts": tuple(journey.carts), "orders": tuple(journey.orders)}
    )
    return person, journey.calls


def _source(seed: int, index: int, registered: bool, bad_address: bool) -> str:
    if bad_address:
        return "newsletter_signup"
    return weighted(seed, SOURCES if registered else OTHER_SOURCES, index, "source")


def _traits(
    seed: int, index: int, person: Contact, last: str, source: str, dormant: bool
) -> dict[str, Any]:
    shopper = member(seed, index, "shopper") or member(seed, index, "buyer")
    if member(seed, index, "vip"):
        value = round(between(seed, 1200, 4000, index, "ltv"), 2)
    else:
        value = round(between(seed, 15, 900, index, "ltv"), 2) if shopper else 0
    tags = ["dormant", "newsletter"] if dormant else []
    if source == "newsletter_signup" and not dormant:
        tags = ["newsletter"]
    plans = (("Free", 75.0), ("Pro", 18.0), ("Team", 7.0))
    return {
        "email": person.email,
        "first_name": person.first_name,
        "last_name": last,
        "timezone": person.timezone,
        "plan": weighted(seed, plans, index, "plan"),
        "subscription_source": source,
        "lifetime_value": value,
        "currency": "USD",
        "tags": tags,
        "demo_seed": seed,
    }


def _items(journey: _Journey, *parts: object) -> tuple[list[dict[str, Any]], float]:
    count = weighted(journey.seed, ((1, 60.0), (2, 30.0), (3, 10.0)), journey.index, *parts, "n")
    items: list[dict[str, Any]] = []
    total = 0.0
    for k in range(count):
        name, price = pick(journey.seed, PRODUCTS, journey.index, *parts, k)
        quantity = weighted(journey.seed, ((1, 85.0), (2, 15.0)), journey.index, *parts, k, "q")
        slug = name.lower().replace(",", "").replace(" ", "-")
        total += price * quantity
        items.append(
            {
                "name": name,
                "price": price,
                "quantity": quantity,
                "url": f"https://example.com/p/{slug}",
            }
        )
    return items, round(total, 2)


def purchase(order_id: str, items: Sequence[Mapping[str, Any]], total: float) -> dict[str, Any]:
    """The properties of ``purchase_completed`` (Segment's Order Completed fields)."""
    return {
        "order_id": order_id,
        "total": total,
        "revenue": total,
        "currency": "USD",
        "product": items[0]["name"],
        "items": [dict(i) for i in items],
    }


def _shop(journey: _Journey, after: datetime) -> None:
    carts = 2 if journey.chance("carts") < 0.15 else 1
    for k in range(carts):
        at = journey.when(after, "cart", k)
        if at is None:
            return
        items, total = _items(journey, "cart", k)
        cart_id = f"cart-{journey.seed}-{journey.index}-{k}"
        journey.carts.append(Cart(cart_id, at, total, tuple(items)))
        journey.add(
            at,
            f"cart-{k}",
            "cart_abandoned",
            {"cart_id": cart_id, "cart_total": total, "currency": "USD", "items": items},
        )
        fate = journey.chance("cart", k, "fate")
        if fate < 0.25:  # back within the hour: no reminder
            bought = at + timedelta(minutes=between(journey.seed, 5, 55, journey.index, k, "buy"))
        elif fate < 0.33:  # later, after the reminder
            bought = at + timedelta(hours=between(journey.seed, 3, 30, journey.index, k, "buy"))
        else:
            continue
        if bought <= journey.end:
            order_id = f"o-{journey.seed}-{journey.index}-c{k}"
            journey.orders.append(Order(order_id, bought, total, items[0]["name"]))
            properties = {**purchase(order_id, items, total), "cart_id": cart_id}
            journey.add(bought, f"cart-{k}-buy", "purchase_completed", properties)


def _buy(journey: _Journey, after: datetime) -> None:
    orders = 2 if journey.chance("orders") < 0.2 else 1
    for k in range(orders):
        at = journey.when(after, "order", k)
        if at is None:
            return
        items, total = _items(journey, "order", k)
        order_id = f"o-{journey.seed}-{journey.index}-{k}"
        journey.orders.append(Order(order_id, at, total, items[0]["name"]))
        journey.add(at, f"order-{k}", "purchase_completed", purchase(order_id, items, total))


def _trial(journey: _Journey, after: datetime) -> None:
    at = journey.when(after, "trial")
    if at is None:
        return
    seed, index = journey.seed, journey.index
    length = weighted(seed, ((14, 70.0), (7, 15.0), (30, 15.0)), index, "trial-days")
    plan = weighted(seed, (("Pro", 75.0), ("Team", 25.0)), index, "trial-plan")
    ends = (at.astimezone(ZoneInfo(journey.zone)) + timedelta(days=length)).date().isoformat()
    properties = {"plan": plan, "trial_days": length, "trial_ends_at": ends}
    journey.add(at, "trial", "trial_started", properties)
    second = timedelta(seconds=1)
    journey.add(at + second, "trial-identify", None, {"plan": plan, "trial_ends_at": ends})
    if journey.chance("subscribes") >= 0.35:
        return
    subscribed = at + timedelta(days=length * between(seed, 0.1, 0.7, index, "subscribed"))
    if subscribed > journey.end:
        return
    billing = weighted(seed, (("monthly", 70.0), ("yearly", 30.0)), index, "billing")
    journey.add(
        subscribed, "subscribe", "subscription_started", {"plan": plan.lower(), "billing": billing}
    )
    journey.add(subscribed + second, "subscribe-identify", None, {"trial_ends_at": None})


def campaigns(start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    """The newsletters sent between ``start`` and ``end`` (time, campaign name)."""
    found = []
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day <= end:
        for weekday, hour, name in CAMPAIGNS:
            at = day.replace(hour=hour)
            if day.weekday() == weekday and start <= at <= end:
                found.append((at, f"{name}-{at:%Y-%m-%d}"))
        day += timedelta(days=1)
    return found


def _read(journey: _Journey, seen: datetime, start: datetime) -> None:
    """A dormant reader opening newsletters again: keen ones open most of them."""
    keen = journey.chance("keen") < 0.5
    for k, (sent, campaign) in enumerate(campaigns(start, journey.end)):
        if journey.chance("read", k) >= (0.7 if keen else 0.12):
            continue
        delay = timedelta(minutes=5 * 360 ** journey.chance("read", k, "delay"))  # 5 min - 30 h
        opened = sent + delay
        if not seen < opened <= journey.end:
            continue
        properties = {"campaign": campaign, "source": "newsletter"}
        journey.add(opened, f"read-{k}", "email_opened", properties)
        if journey.chance("read", k, "click") < 0.3:
            clicked = opened + timedelta(seconds=between(journey.seed, 20, 600, journey.index, k))
            url = f"https://example.com/blog/{campaign}"
            if clicked <= journey.end:
                journey.add(clicked, f"read-{k}-click", "email_clicked", {**properties, "url": url})
