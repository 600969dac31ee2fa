"""Notifiers made real for a local node: an outbox folder of .eml files, an SMTP smarthost, and both at once.

On AWS the SNS notifier takes their place; all of them deliver the same `Alert` through `Notifier.send`.
"""
from __future__ import annotations

import os
import secrets
import smtplib
import ssl
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path

from ..core.ports import Alert, Clock, Notifier

DEFAULT_SENDER = "netimmune@localhost"
DEFAULT_RECIPIENTS = ("operators@localhost",)


def build_email(alert: Alert, sender: str, recipients: Sequence[str], now: datetime | None = None) -> EmailMessage:
    """The alert as an RFC 5322 message, the same for the outbox and the smarthost.

    `Auto-Submitted` keeps vacation responders quiet; the X-Netimmune headers let a mail filter or a
    ticketing system route by address, category and kind without parsing the body.
    """
    if not recipients:
        raise ValueError("an alert email needs at least one recipient")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(now or datetime.now(timezone.utc))
    # The sender's domain, given explicitly: make_msgid would otherwise look up this host's FQDN.
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(idstring=alert.kind, domain=domain)
    message["Subject"] = alert.subject
    message["Auto-Submitted"] = "auto-generated"
    message["X-Netimmune-Kind"] = alert.kind
    if alert.ip:
        message["X-Netimmune-IP"] = alert.ip
    if alert.category:
        message["X-Netimmune-Category"] = alert.category
    message.set_content(alert.body)
    return message


class OutboxNotifier:
    """Each alert as one .eml file in a folder an operator reads locally (any mail client opens them).

    A file appears whole or not at all: it is written under a hidden temporary name, flushed to disk and
    renamed. Names sort by time: `20261126T120000.123456Z-alert-1a2b3c4d.eml`.
    """

    def __init__(self, folder: str | Path, sender: str = DEFAULT_SENDER,
                 recipients: Sequence[str] = DEFAULT_RECIPIENTS, clock: Clock | None = None) -> None:
        self.folder = Path(folder)
        self.sender = sender
        self.recipients = tuple(recipients)
        self.clock = clock  # None: the system clock

    def send(self, alert: Alert) -> None:
        now = (self.clock.now() if self.clock else datetime.now(timezone.utc)).astimezone(timezone.utc)
        data = build_email(alert, self.sender, self.recipients, now).as_bytes()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{now:%Y%m%dT%H%M%S.%fZ}-{alert.kind}-{secrets.token_hex(4)}.eml"
        handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _sync_directory(self.folder)


def _sync_directory(folder: Path) -> None:
    """Make the rename itself durable (POSIX), so an acknowledged alert survives a power cut."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


class SmtpNotifier:
    """Sends each alert through a smarthost (the organisation's mail relay), one SMTP session per alert."""

    def __init__(self, host: str, port: int, sender: str, recipients: Sequence[str], starttls: bool = False,
                 username: str | None = None, password: str | None = None, timeout: float = 10,
                 local_hostname: str | None = None) -> None:
        if not recipients:
            raise ValueError("an SMTP notifier needs at least one recipient")
        if (username is None) != (password is None):
            raise ValueError("SMTP login needs both a username and a password")
        self.host, self.port = host, port
        self.sender, self.recipients = sender, tuple(recipients)
        self.starttls, self.username, self.password = starttls, username, password
        self.timeout = timeout
        self.local_hostname = local_hostname  # the EHLO name; None: this host's FQDN

    def send(self, alert: Alert) -> None:
        """Deliver or raise; a recipient the smarthost refuses is an error too, so the job is retried
        (and the others, who were given the message, get it again)."""
        message = build_email(alert, self.sender, self.recipients)
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username is not None:
                smtp.login(self.username, self.password)
            refused = smtp.send_message(message)
        if refused:
            raise smtplib.SMTPRecipientsRefused(refused)


class FanoutNotifier:
    """Sends to every notifier; one failing does not stop the others, and the failures are raised after
    all were tried, so the job queue retries (and the ones that succeeded deliver again)."""

    def __init__(self, *notifiers: Notifier) -> None:
        if not notifiers:
            raise ValueError("a fanout needs at least one notifier")
        self.notifiers = notifiers

    def send(self, alert: Alert) -> None:
        failures: list[Exception] = []
        for notifier in self.notifiers:
            try:
                notifier.send(alert)
            except Exception as exc:
                exc.add_note(f"while sending through {type(notifier).__name__}")
                failures.append(exc)
        if failures:
            raise ExceptionGroup(f"{len(failures)} of {len(self.notifiers)} notifiers failed to send "
                                 f"{alert.subject!r}", failures)
