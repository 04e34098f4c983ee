"""The MIME builder, tested on the bytes it produces: parsed back with the standard library,
the header set must be exactly what we wrote, whatever hostile text went into it."""

from __future__ import annotations

import base64
import email
import re
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim as dkimpy  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowmail.delivery import headers as h
from flowmail.delivery.dkim import DkimError, DkimSigner
from flowmail.delivery.mime import HeaderError, build_message, encode_body
from flowmail.delivery.model import OutgoingEmail
from flowmail.settings import Settings

DATE = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)
BASE_HEADERS = ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version"]
MARKETING = {
    "List-Unsubscribe": "<https://example.com/u/abc123>, <mailto:unsub+abc123@example.com>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    "Feedback-ID": "welcome:hello:flowmail:example",
}
TAGS = {"workflow": "welcome", "step": "hello", "message": "m-1"}
TAG_HEADERS = ["X-Flowmail-Workflow", "X-Flowmail-Step", "X-Flowmail-Message"]

PROPERTIES = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def make_email(**changes: Any) -> OutgoingEmail:
    base = OutgoingEmail(
        message_id="m-1.r42@mail.example.com",
        idempotency_key="m-1",
        from_address="news@example.com",
        from_name="Example News",
        to="bob@example.org",
        subject="Welcome, Bob",
        text="Hello Bob,\nwelcome aboard.\n",
        html="<p>Hello Bob,</p><p>welcome aboard.</p>\n",
        headers=dict(MARKETING),
        tags=dict(TAGS),
    )
    return replace(base, **changes)


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def expected_names(mail: OutgoingEmail) -> list[str]:
    names = ["From", "To"] + (["Reply-To"] if mail.reply_to else [])
    names += ["Subject", "Date", "Message-ID", "MIME-Version", *mail.headers]
    present = {name.lower() for name in mail.headers}
    names += [h.tag_header(tag) for tag in mail.tags if h.tag_header(tag).lower() not in present]
    if mail.html is None:
        return [*names, "Content-Type", "Content-Transfer-Encoding"]
    return [*names, "Content-Type"]


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def assert_well_formed(raw: bytes, mail: OutgoingEmail) -> EmailMessage:
    """The structural checks every generated message must pass."""
    block = header_block(raw)
    assert raw.isascii()
    assert b"\n" not in block.replace(b"\r\n", b""), "bare LF in the header block"
    assert b"\r" not in block.replace(b"\r\n", b""), "bare CR in the header block"
    assert b"\x00" not in raw
    for line in block.split(b"\r\n"):
        assert len(line) <= 998
        assert line[:1] in (b" ", b"\t") or re.match(rb"^[A-Za-z0-9-]+: ?", line), line
    top_level = [
        line.split(b":", 1)[0].decode() for line in block.split(b"\r\n") if line[:1] != b" "
    ]
    assert top_level == expected_names(mail)
    message = parse(raw)
    assert list(message.keys()) == expected_names(mail)
    legacy = email.message_from_bytes(raw)  # the compat32 parser must agree
    assert list(legacy.keys()) == expected_names(mail)
    assert not message.defects
    for name, value in message.items():
        assert not re.search(r"[\x00-\x1f\x7f\u2028\u2029]", str(value)), (name, value)
    assert message.get_all("Bcc") is None and message.get_all("Cc") is None
    return message


def body_parts(message: EmailMessage) -> list[str]:
    parts = [message] if not message.is_multipart() else list(message.iter_parts())
    out = []
    for part in parts:
        assert isinstance(part, EmailMessage)
        out.append(part.get_content().replace("\r\n", "\n"))
    return out


def normalised(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def display_name(raw: bytes) -> str:
    """The From display name as an RFC 2047 reader sees it (whitespace between adjacent
    encoded words dropped; Python's phrase parser keeps it, which is its own deviation)."""
    legacy = email.message_from_bytes(raw)
    value = str(legacy["From"]).replace("\r\n", "")
    if "=?" in value:
        decoded = str(make_header(decode_header(value)))
        return decoded.rsplit(" <", 1)[0] if "<" in decoded else ""
    address = parse(raw)["From"].addresses[0]
    return str(address.display_name)


# --- the ordinary message ---------------------------------------------------------------


def test_multipart_alternative_with_every_header() -> None:
    mail = make_email()
    raw = build_message(mail, date=DATE)
    message = assert_well_formed(raw, mail)
    assert message.get_content_type() == "multipart/alternative"
    assert str(message["From"]) == "Example News <news@example.com>"
    assert str(message["To"]) == "bob@example.org"
    assert str(message["Subject"]) == "Welcome, Bob"
    assert str(message["Date"]) == "Mon, 01 Sep 2025 09:00:00 +0000"
    assert str(message["Message-ID"]) == "<m-1.r42@mail.example.com>"
    assert str(message["MIME-Version"]) == "1.0"
    for name, value in MARKETING.items():
        assert str(message[name]) == value
    assert str(message["X-Flowmail-Workflow"]) == "welcome"
    assert str(message["X-Flowmail-Step"]) == "hello"
    assert str(message["X-Flowmail-Message"]) == "m-1"
    plain, html = message.iter_parts()
    assert plain.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    assert body_parts(message) == [mail.text, mail.html]
    assert plain.get_content_charset() == "utf-8"


def test_text_only_is_a_single_part() -> None:
    mail = make_email(html=None, headers={}, tags={})
    raw = build_message(mail, date=DATE)
    message = assert_well_formed(raw, mail)
    assert message.get_content_type() == "text/plain"
    assert body_parts(message) == [mail.text]


def test_the_same_email_builds_the_same_bytes() -> None:
    mail = make_email()
    assert build_message(mail, date=DATE) == build_message(mail, date=DATE)


def test_reply_to_and_a_zone_offset_date() -> None:
    mail = make_email(reply_to="help@example.com")
    raw = build_message(mail, date=datetime(2025, 9, 1, 11, 0, tzinfo=timezone(timedelta(hours=2))))
    message = assert_well_formed(raw, mail)
    assert str(message["Reply-To"]) == "help@example.com"
    assert str(message["Date"]) == "Mon, 01 Sep 2025 11:00:00 +0200"


def test_a_naive_date_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        build_message(make_email(), date=datetime(2025, 9, 1, 9, 0))


def test_an_idn_domain_becomes_punycode() -> None:
    mail = make_email(to="zoe@bücher.example")
    message = parse(build_message(mail, date=DATE))
    assert str(message["To"]) == "zoe@xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Acme, Inc.", '"Acme, Inc." <news@example.com>'),
        ('Say "hi" \\ there', '"Say \\"hi\\" \\\\ there" <news@example.com>'),
        ("Zoë", "=?UTF-8?B?Wm/Dqw==?= <news@example.com>"),
        ("", "news@example.com"),
        (None, "news@example.com"),
        ("  \r\n ", "news@example.com"),
    ],
)
def test_display_names(name: str | None, expected: str) -> None:
    mail = make_email(from_name=name)
    raw = build_message(mail, date=DATE)
    assert_well_formed(raw, mail)
    from_line = header_block(raw).split(b"\r\n")[0].decode()
    assert from_line == f"From: {expected}"
    assert display_name(raw) == h.clean_name(name)


# --- folding ---------------------------------------------------------------------------------


def test_a_long_ascii_subject_is_folded_at_spaces() -> None:
    subject = " ".join(f"word{i}" for i in range(60))
    mail = make_email(subject=subject)
    raw = build_message(mail, date=DATE)
    message = assert_well_formed(raw, mail)
    lines = [line for line in header_block(raw).split(b"\r\n")]
    start = next(i for i, line in enumerate(lines) if line.startswith(b"Subject:"))
    assert len(lines[start + 1]) <= 78 and lines[start + 1].startswith(b" ")
    assert all(len(line) <= 78 for line in lines if not line.startswith(b"List-Unsubscribe"))
    assert str(message["Subject"]) == subject


def test_a_long_unicode_subject_becomes_short_encoded_words() -> None:
    subject = "Ünïcödé 🎉 " * 30
    mail = make_email(subject=subject)
    raw = build_message(mail, date=DATE)
    message = assert_well_formed(raw, mail)
    block = header_block(raw).decode()
    subject_lines = block.split("Subject:", 1)[1].split("\r\nDate:", 1)[0].split("\r\n")
    assert len(subject_lines) > 5
    assert all(len(line) <= 76 for line in subject_lines)
    assert str(message["Subject"]) == h.clean_text(subject)


def test_a_word_too_long_to_fold_is_encoded() -> None:
    subject = "x" * 1500
    mail = make_email(subject=subject)
    raw = build_message(mail, date=DATE)
    message = assert_well_formed(raw, mail)
    assert str(message["Subject"]) == subject


# --- bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("plain ascii\nlines\n", "7bit"),
        ("a" * 1200 + "\n", "quoted-printable"),
        ("mostly ascii with one é\n", "quoted-printable"),
        ("tab\tand trailing space \n", "7bit"),
        ("a NUL \x00 and an escape \x1b\n", "quoted-printable"),
        ("Здравствуйте, это почти всё кириллица\n" * 4, "base64"),
        ("日本語のテキスト\n", "base64"),
    ],
)
def test_body_encodings_round_trip(text: str, encoding: str) -> None:
    assert encode_body(text)[0] == encoding
    mail = make_email(text=text, html=None)
    raw = build_message(mail, date=DATE)
    message = assert_well_formed(raw, mail)
    assert str(message["Content-Transfer-Encoding"]) == encoding
    assert body_parts(message) == [normalised(text)]
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_a_body_cannot_fake_the_boundary() -> None:
    first = build_message(make_email(), date=DATE)
    boundary = re.search(rb'boundary="([^"]+)"', first)
    assert boundary is not None
    fake = f"--{boundary.group(1).decode()}\r\nContent-Type: text/html\r\n\r\n<script>x</script>\n"
    mail = make_email(text="before\n" + fake + "after\n")
    raw = build_message(mail, date=DATE)
    message = assert_well_formed(raw, mail)
    assert len(list(message.iter_parts())) == 2
    assert body_parts(message)[0] == normalised(mail.text)


def test_line_endings_are_crlf_throughout() -> None:
    raw = build_message(make_email(text="a\rb\nc\r\nd"), date=DATE)
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")


# --- hostile input --------------------------------------------------------------------------

B64_NEWLINE = base64.b64encode(b"\r\nBcc: victim@evil.example").decode()
NESTED = base64.b64encode(b"=?UTF-8?Q?=0A?=Bcc: victim@evil.example").decode()
HOSTILE = [
    "hi\r\nBcc: victim@evil.example",
    "hi\nBcc: victim@evil.example",
    "hi\rBcc: victim@evil.example",
    "hi\r\n\r\n<html>injected body</html>",
    "hi\x00Bcc: victim@evil.example",
    "hi\x0bBcc: victim@evil.example",
    "hi\x0cBcc: victim@evil.example",
    "hi\x1cBcc: victim@evil.example",
    "hi\x85Bcc: victim@evil.example",
    "hi\u2028Bcc: victim@evil.example",
    "hi\u2029Bcc: victim@evil.example",
    "hi\tBcc:\tvictim@evil.example",
    "=?UTF-8?Q?=0A?=Bcc: victim@evil.example",
    "=?UTF-8?Q?=0D=0A?=Bcc: victim@evil.example",
    "=?utf-8?q?hi=0D=0ABcc=3A_victim=40evil=2Eexample?=",
    f"=?UTF-8?B?{B64_NEWLINE}?=",
    f"hi =?UTF-8?B?{B64_NEWLINE}?= there",
    f"=?UTF-8?B?{NESTED}?=",
    "=?ISO-8859-1?Q?=0A?=Bcc: victim@evil.example",
    "=?UTF-8*en?Q?=0A?=Bcc: victim@evil.example",
    "=?utf-7?Q?+AAo-?=Bcc: victim@evil.example",
    "=?UTF-8?Q?a=0A?= =?UTF-8?Q?=0A?=Bcc: victim@evil.example",
    "a=?UTF-8?Q?=0A?=b",
    "=?UTF-8?Q?=0A",
    "=?unknown-charset?Q?=0A?=Bcc: victim@evil.example",
    "=?UTF-8?X?=0A?=",
    "x" * 3000 + "\r\nBcc: victim@evil.example",
    "Bcc: victim@evil.example",
    ":\r\n:",
    "\r\n",
    "",
]


def _hostile_email(field: str, payload: str) -> OutgoingEmail:
    if field == "subject":
        return make_email(subject=payload)
    if field == "from_name":
        return make_email(from_name=payload)
    if field == "header":
        return make_email(headers={**MARKETING, "List-Unsubscribe": payload})
    if field == "feedback":
        return make_email(headers={**MARKETING, "Feedback-ID": payload}, html=None)
    return make_email(tags={**TAGS, "workflow": payload})


@pytest.mark.parametrize("field", ["subject", "from_name", "header", "feedback", "tag"])
@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_header_values_never_start_a_header(field: str, payload: str) -> None:
    mail = _hostile_email(field, payload)
    raw = build_message(mail, date=DATE)
    message = assert_well_formed(raw, mail)
    assert b"\r\nBcc:" not in header_block(raw)
    assert body_parts(message) == [normalised(mail.text)] + (
        [normalised(mail.html)] if mail.html is not None else []
    )
    if field == "subject":
        assert str(message["Subject"]) == h.clean_text(payload)
    if field == "from_name":
        assert display_name(raw) == h.clean_name(payload)
        assert message["From"].addresses[0].addr_spec == "news@example.com"
    if field == "tag":
        assert str(message["X-Flowmail-Workflow"]) == h.clean_text(payload)


@pytest.mark.parametrize(
    "address",
    [
        "bob@example.org\r\nBcc: victim@evil.example",
        "bob@example.org\nBcc: victim@evil.example",
        "bob@example.org\x00",
        "Bob <bob@example.org>",
        "<bob@example.org>",
        "bob@example.org, victim@evil.example",
        "bob@example.org,victim@evil.example",
        "bob @example.org",
        '"bob"@example.org',
        "=?UTF-8?Q?=0A?=@example.org",
        "bob@=?UTF-8?Q?=0A?=.org",
        "bob@example.org;victim@evil.example",
        "bob@@example.org",
        "bob",
        "@example.org",
        "bob@",
        "bob@localhost",
        "bob@exa_mple.org",
        "bob..x@example.org",
        "zoë@example.org",
        "",
        "a" * 70 + "@example.org",
    ],
)
@pytest.mark.parametrize("field", ["to", "from_address", "reply_to"])
def test_hostile_addresses_are_refused(field: str, address: str) -> None:
    if field == "reply_to" and not address:
        return  # no Reply-To at all
    with pytest.raises(HeaderError):
        build_message(make_email(**{field: address}), date=DATE)


@pytest.mark.parametrize(
    "message_id",
    ["a@b\r\nBcc: x@y.z", "<a@b.c>", "a b@c.d", "no-at-sign", "a@b>", "=?UTF-8?Q?=0A?=@b.c", ""],
)
def test_hostile_message_ids_are_refused(message_id: str) -> None:
    with pytest.raises(HeaderError):
        build_message(make_email(message_id=message_id), date=DATE)


@pytest.mark.parametrize(
    "name",
    [
        "X-Evil\r\nBcc",
        "X-Evil: x\r\nBcc",
        "X Evil",
        "X-Evil:",
        "",
        "Bcc",
        "bcc",
        "To",
        "From",
        "Subject",
        "Message-ID",
        "Content-Type",
        "content-transfer-encoding",
        "DKIM-Signature",
        "MIME-Version",
        "Return-Path",
        "X-" + "a" * 60,
        "X-Ünï",
    ],
)
def test_hostile_header_names_are_refused(name: str) -> None:
    with pytest.raises(HeaderError):
        build_message(make_email(headers={name: "x"}), date=DATE)


@pytest.mark.parametrize("tag", ["work flow", "a\r\nBcc", "", "x" * 40, "ü"])
def test_hostile_tag_names_are_refused(tag: str) -> None:
    with pytest.raises(HeaderError):
        build_message(make_email(tags={tag: "x"}), date=DATE)


def test_a_header_given_twice_is_refused() -> None:
    with pytest.raises(HeaderError, match="twice"):
        build_message(make_email(headers={"X-A": "1", "x-a": "2"}), date=DATE)


def test_a_tag_header_already_given_is_not_duplicated() -> None:
    mail = make_email(headers={"X-Flowmail-Workflow": "given"})
    message = assert_well_formed(build_message(mail, date=DATE), mail)
    assert message.get_all("X-Flowmail-Workflow") == ["given"]


def test_clean_text_decodes_then_cleans() -> None:
    assert h.clean_text("=?UTF-8?Q?=0A?=Bcc: x") == "Bcc: x"
    assert h.clean_text("=?UTF-8?B?w6k=?= =?UTF-8?B?w6k=?=") == "éé"
    assert h.clean_text(f"=?UTF-8?B?{NESTED}?=") == "Bcc: victim@evil.example"
    assert h.clean_text("a\r\n  b\t\tc ") == "a b c"
    assert h.clean_text("\ud800x") == "x"


# --- properties ------------------------------------------------------------------------------

ANY_TEXT = st.text(max_size=300)
HEADER_TEXT = st.one_of(
    ANY_TEXT,
    # fragments of encoded words, line breaks and header syntax, shuffled together
    st.lists(
        st.sampled_from(
            [
                *"=?QBqbU8-_ \r\n\x00\x0b\u2028é:",
                "=?UTF-8?Q?",
                "=?UTF-8?B?",
                "=?x?q?",
                "?=",
                "=0A",
                "Cg==",
                "DQo=",
                "Bcc: x@evil.example",
                "=?UTF-8?Q?=0A?=",
            ]
        ),
        max_size=30,
    ).map("".join),
)


@PROPERTIES
@given(
    subject=HEADER_TEXT,
    from_name=HEADER_TEXT,
    header_value=HEADER_TEXT,
    tag_value=HEADER_TEXT,
    text=ANY_TEXT,
    html=st.none() | ANY_TEXT,
)
def test_any_text_anywhere_gives_exactly_the_expected_headers(
    subject: str, from_name: str, header_value: str, tag_value: str, text: str, html: str | None
) -> None:
    mail = make_email(
        subject=subject,
        from_name=from_name,
        headers={**MARKETING, "Feedback-ID": header_value},
        tags={**TAGS, "step": tag_value},
        text=text,
        html=html,
    )
    raw = build_message(mail, date=DATE)
    message = assert_well_formed(raw, mail)
    assert str(message["Subject"]) == h.clean_text(subject)
    assert str(message["Feedback-ID"]) == h.clean_text(header_value)
    assert str(message["X-Flowmail-Step"]) == h.clean_text(tag_value)
    assert display_name(raw) == h.clean_name(from_name)
    expected = [normalised(text)] + ([normalised(html)] if html is not None else [])
    assert body_parts(message) == expected


ADDRESS_TEXT = st.one_of(
    st.emails().map(str),
    st.text(max_size=60),
    st.lists(
        st.sampled_from([*"bob@example.org", "\r\n", "\x00", "<", ">", ",", " ", '"', "=?", "?="]),
        max_size=25,
    ).map("".join),
)


@PROPERTIES
@given(
    to=ADDRESS_TEXT,
    reply_to=ADDRESS_TEXT,
    name=st.from_regex(r"X-[A-Za-z0-9-]{1,20}", fullmatch=True) | st.text(max_size=50),
)
def test_any_address_or_header_name_is_refused_or_written_exactly(
    to: str, reply_to: str, name: str
) -> None:
    mail = make_email(to=to, reply_to=reply_to or None, headers={name: "value"})
    try:
        raw = build_message(mail, date=DATE)
    except HeaderError:
        return
    message = assert_well_formed(raw, mail)
    assert message["To"].addresses[0].addr_spec == h.check_address(to)
    if reply_to:
        assert message["Reply-To"].addresses[0].addr_spec == h.check_address(reply_to)
    assert message.get_all(name) == ["value"]


@PROPERTIES
@given(value=HEADER_TEXT)
def test_clean_text_is_one_safe_idempotent_line(value: str) -> None:
    cleaned = h.clean_text(value)
    assert h.clean_text(cleaned) == cleaned
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", cleaned)
    assert h.decode_words(cleaned) == cleaned or "=?" in cleaned


# --- DKIM ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A fresh 2048-bit RSA key (openssl) and the DNS TXT record that publishes it."""
    folder = tmp_path_factory.mktemp("dkim")
    key = folder / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return key, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def _dns(record: bytes) -> Any:
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"sel1._domainkey.example.com." else None

    return lookup


def test_dkim_signature_verifies(rsa_key: tuple[Path, bytes]) -> None:
    key, record = rsa_key
    signer = DkimSigner("example.com", "sel1", key.read_bytes())
    mail = make_email(subject="Signé 🎉 " * 8)
    raw = build_message(mail, dkim=signer, date=DATE)
    assert raw.startswith(b"DKIM-Signature: ")
    assert dkimpy.verify(raw, dnsfunc=_dns(record))
    message = parse(raw)
    assert list(message.keys()) == ["DKIM-Signature", *expected_names(mail)]
    signature = str(message["DKIM-Signature"]).replace(" ", "")
    assert "a=rsa-sha256" in signature and "c=relaxed/relaxed" in signature
    assert "d=example.com" in signature and "s=sel1" in signature
    signed = re.search(r"h=([^;]+)", signature)
    assert signed is not None
    names = signed.group(1).split(":")
    for name in (
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "feedback-id",
    ):
        assert name in names


def test_dkim_catches_a_changed_or_added_unsubscribe_header(rsa_key: tuple[Path, bytes]) -> None:
    key, record = rsa_key
    signer = DkimSigner("example.com", "sel1", key.read_bytes())
    raw = build_message(make_email(), dkim=signer, date=DATE)
    changed = raw.replace(b"https://example.com/u/abc123", b"https://evil.example/u/abc123")
    assert not dkimpy.verify(changed, dnsfunc=_dns(record))
    transactional = build_message(make_email(headers={}), dkim=signer, date=DATE)
    assert dkimpy.verify(transactional, dnsfunc=_dns(record))
    added = transactional.replace(
        b"\r\nMIME-Version:", b"\r\nList-Unsubscribe: <https://evil.example/>\r\nMIME-Version:"
    )
    assert not dkimpy.verify(added, dnsfunc=_dns(record))


def test_dkim_from_settings(rsa_key: tuple[Path, bytes], tmp_path: Path) -> None:
    key, _ = rsa_key
    assert DkimSigner.from_settings(Settings(dkim_domain="")) is None
    signer = DkimSigner.from_settings(
        Settings(dkim_domain="example.com", dkim_selector="sel1", dkim_key_file=str(key))
    )
    assert signer is not None and signer.domain == "example.com" and signer.selector == "sel1"
    with pytest.raises(DkimError, match="dkim_selector"):
        DkimSigner.from_settings(Settings(dkim_domain="example.com"))
    with pytest.raises(DkimError, match="cannot read"):
        DkimSigner.from_settings(
            Settings(
                dkim_domain="example.com",
                dkim_selector="s",
                dkim_key_file=str(tmp_path / "missing.pem"),
            )
        )
    not_a_key = tmp_path / "not-a-key.pem"
    not_a_key.write_text("hello")
    with pytest.raises(DkimError, match="PEM"):
        DkimSigner.from_settings(
            Settings(dkim_domain="example.com", dkim_selector="s", dkim_key_file=str(not_a_key))
        )
