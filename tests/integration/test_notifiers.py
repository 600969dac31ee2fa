"""Alerts delivered for real: through aiosmtpd on loopback, into an outbox folder, and to both at once."""
from __future__ import annotations

import contextlib
import smtplib
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from chalicelib.adapters.notifiers import FanoutNotifier, OutboxNotifier, SmtpNotifier
from chalicelib.core.alerts import compose_alert, compose_digest

LOOPBACK = "127.0.0.1"
SENDER = "netimmune <alerts@isp.example>"
OPERATORS = ("noc@isp.example", "oncall@isp.example")
ALERT = compose_alert(ip="198.51.100.7", category="open-proxy", score=12.5, verdict="confirmed",
                      actions=["blocked 7d"], node_name="isp-a", resolve_hint="https://reports.isp.example",
                      details="SOCKS5 on 1080 fetched the canary")


def parse(data: bytes) -> EmailMessage:
    return message_from_bytes(data, policy=policy.default)


def smtp(port: int, **options) -> SmtpNotifier:
    return SmtpNotifier(LOOPBACK, port, SENDER, OPERATORS, timeout=2, local_hostname="localhost", **options)


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current


class CollectingHandler:
    """Accepts mail for everyone but `refused` and keeps each message with its envelope."""

    def __init__(self, refused: tuple[str, ...] = ()) -> None:
        self.refused = refused
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address in self.refused:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 queued"


@contextlib.contextmanager
def smarthost(handler: CollectingHandler, **options) -> Iterator[int]:
    """aiosmtpd on a free loopback port (it cannot take port 0 itself); yields the port."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname=LOOPBACK, port=port, ready_timeout=10, **options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def test_alert_reaches_the_smarthost_with_headers_that_parse_back():
    handler = CollectingHandler()
    with smarthost(handler) as port:
        smtp(port).send(ALERT)
    [(mail_from, rcpt_tos, data)] = handler.received
    assert mail_from == "alerts@isp.example"
    assert rcpt_tos == list(OPERATORS)
    message = parse(data)
    assert message["Subject"] == ALERT.subject
    assert message["From"] == SENDER
    assert message["To"] == ", ".join(OPERATORS)
    assert message["Message-ID"].endswith("@isp.example>")
    assert abs(parsedate_to_datetime(message["Date"]) - datetime.now(timezone.utc)) < timedelta(minutes=1)
    assert message["Auto-Submitted"] == "auto-generated"
    assert (message["X-Netimmune-IP"], message["X-Netimmune-Category"]) == ("198.51.100.7", "open-proxy")
    assert message.get_content().replace("\r\n", "\n") == ALERT.body  # SMTP carries CRLF line ends


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # loopback, no certificate here
def test_smarthost_login_is_used_when_configured():
    """A relay that demands authentication gets the configured credentials."""
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"s3cret", handled=False)

    handler = CollectingHandler()
    with smarthost(handler, authenticator=authenticator, auth_required=True, auth_require_tls=False) as port:
        smtp(port, username="netimmune", password="s3cret").send(ALERT)
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp(port, username="netimmune", password="wrong").send(ALERT)
    assert logins[0] == (b"netimmune", b"s3cret")
    assert set(logins[1:]) == {(b"netimmune", b"wrong")}  # smtplib tries each mechanism offered
    assert len(handler.received) == 1


def test_a_refused_recipient_is_an_error_so_the_job_is_retried():
    handler = CollectingHandler(refused=("oncall@isp.example",))
    with smarthost(handler) as port, pytest.raises(smtplib.SMTPRecipientsRefused) as raised:
        smtp(port).send(ALERT)
    assert list(raised.value.recipients) == ["oncall@isp.example"]
    assert [rcpt for _, rcpt, _ in handler.received] == [["noc@isp.example"]]


def test_outbox_writes_parseable_eml_files_that_sort_by_time(tmp_path: Path):
    clock = FixedClock(datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc))
    outbox = OutboxNotifier(tmp_path / "outbox", sender=SENDER, recipients=OPERATORS, clock=clock)
    outbox.send(ALERT)
    clock.current += timedelta(microseconds=1)
    digest = compose_digest([ALERT] * 12, window_minutes=15)
    outbox.send(digest)

    files = sorted((tmp_path / "outbox").iterdir())
    assert [f.name[:30] for f in files] == ["20261126T120000.000000Z-alert-", "20261126T120000.000001Z-digest"]
    assert all(f.suffix == ".eml" for f in files), "no temporary file is left behind"
    first, second = (parse(f.read_bytes()) for f in files)
    assert (first["Subject"], second["Subject"]) == (ALERT.subject, digest.subject)
    assert parsedate_to_datetime(first["Date"]) == clock.now() - timedelta(microseconds=1)
    assert first["To"] == ", ".join(OPERATORS) and first["Message-ID"] != second["Message-ID"]
    assert second.get_content() == digest.body


def test_fanout_goes_on_past_a_dead_smarthost_and_raises_after(tmp_path: Path, closed_port: int):
    """The outboxes on both sides of the dead relay get the alert; the failure still reaches the job queue."""
    before, after = OutboxNotifier(tmp_path / "before"), OutboxNotifier(tmp_path / "after")
    fanout = FanoutNotifier(before, smtp(closed_port), after)
    with pytest.raises(ExceptionGroup) as raised:
        fanout.send(ALERT)
    assert [type(e) for e in raised.value.exceptions] == [ConnectionRefusedError]
    assert "1 of 3 notifiers failed" in str(raised.value)
    for folder in (tmp_path / "before", tmp_path / "after"):
        [eml] = folder.iterdir()
        assert parse(eml.read_bytes())["Subject"] == ALERT.subject


def test_fanout_of_nothing_is_refused():
    with pytest.raises(ValueError):
        FanoutNotifier()
