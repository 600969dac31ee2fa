"""Open relay check: will the suspect accept mail from a stranger to a stranger? Never sends DATA.

The envelope goes as far as RCPT TO and stops: an accepted foreign recipient (2xx) is the proof,
and RSET + QUIT end the session before any message could exist. A temporary failure (4xx, such as
greylisting) proves neither way and makes the result inconclusive, and so does a server that accepts
the connection and then times out: a slow server is not a closed one.
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from .result import CheckResult, Transcript, Verdict, endpoint
from .tcp import PROBE_FAILURES, ProtocolViolation, close, connect, describe_failure

DEFAULT_RELAY_PORTS = (25, 587)
MAX_REPLY_LINES = 100
ENVELOPE = ("greeting", "EHLO", "HELO", "MAIL", "RCPT")


@dataclass
class Session:
    port: int
    transcript: Transcript
    connected: bool = False
    timed_out: bool = False  # connected, then the server did not answer in time
    replies: dict[str, str] = field(default_factory=dict)  # command -> the last line of its reply

    @property
    def decisive(self) -> tuple[str, str] | None:
        """The envelope step that ended the attempt and its reply: RCPT when the session got that far."""
        steps = [(name, self.replies[name]) for name in ENVELOPE if name in self.replies]
        return steps[-1] if steps else None

    @property
    def cut_short(self) -> bool:
        """Timed out before the server said no or answered RCPT: nothing was learned."""
        step = self.decisive
        return self.timed_out and (step is None or (step[0] != "RCPT" and step[1].startswith("2")))

    @property
    def relays(self) -> bool:
        return self.decisive is not None and self.decisive[0] == "RCPT" and self.decisive[1].startswith("2")


async def _command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: Session,
                   name: str, line: str | None) -> int:
    """Send one command (None: just read the greeting) and read its possibly multi-line reply."""
    if line is not None:
        data = f"{line}\r\n".encode()
        session.transcript.sent(data)
        writer.write(data)
        await writer.drain()
    for _ in range(MAX_REPLY_LINES):
        reply = await reader.readuntil(b"\n")
        session.transcript.received(reply)
        text = reply.decode("ascii", "replace").rstrip("\r\n")
        if len(text) < 3 or not text[:3].isdigit() or text[3:4] not in ("", " ", "-"):
            raise ProtocolViolation("not an SMTP reply")
        if text[3:4] != "-":
            session.replies[name] = text
            return int(text[:3])
    raise ProtocolViolation("endless SMTP reply")


async def _relay_attempt(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: Session,
                         helo: str, mail_from: str, rcpt_to: str) -> None:
    if await _command(reader, writer, session, "greeting", None) // 100 != 2:
        return
    if await _command(reader, writer, session, "EHLO", f"EHLO {helo}") // 100 != 2:
        if await _command(reader, writer, session, "HELO", f"HELO {helo}") // 100 != 2:
            return
    if await _command(reader, writer, session, "MAIL", f"MAIL FROM:<{mail_from}>") // 100 != 2:
        return
    await _command(reader, writer, session, "RCPT", f"RCPT TO:<{rcpt_to}>")
    await _command(reader, writer, session, "RSET", "RSET")


async def _session(ip: str, port: int, helo: str, mail_from: str, rcpt_to: str, timeout: float) -> Session:
    session = Session(port, Transcript(f"{endpoint(ip, port)} smtp"))
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await connect(ip, port)
            session.connected = True
            try:
                await _relay_attempt(reader, writer, session, helo, mail_from, rcpt_to)
                await _command(reader, writer, session, "QUIT", "QUIT")
            finally:
                await close(writer)
    except PROBE_FAILURES as exc:
        session.transcript.note(describe_failure(exc))
        session.timed_out = session.connected and isinstance(exc, TimeoutError)
    return session


def _verdict(sessions: list[Session]) -> tuple[Verdict, str]:
    """Confirmed by one relaying session; refuted only when no session left the question open."""
    ended = [(s.port, *s.decisive) for s in sessions if s.decisive]
    for port, step, reply in ended:
        if step == "RCPT" and reply.startswith("2"):
            return Verdict.CONFIRMED, f"SMTP on {port} accepted a foreign recipient: {reply}"
    for port, step, reply in ended:
        if reply.startswith("4"):
            return Verdict.INCONCLUSIVE, f"SMTP on {port} failed temporarily at {step}: {reply}"
    for session in sessions:
        if session.cut_short:
            after = f"after {session.decisive[0]}" if session.decisive else "before its greeting"
            return Verdict.INCONCLUSIVE, f"SMTP on {session.port} timed out {after}"
    if ended:
        return Verdict.REFUTED, "; ".join(f"SMTP on {port} refused at {step}: {reply}" for port, step, reply in ended)
    if any(s.connected for s in sessions):
        return Verdict.REFUTED, "open port(s) did not speak SMTP"
    return Verdict.REFUTED, f"none of {len(sessions)} SMTP ports accepts connections"


async def check_open_relay(ip: str, ports: Sequence[int] = DEFAULT_RELAY_PORTS, helo: str = "verify.netimmune.invalid",
                           mail_from: str = "relay-test@example.org", rcpt_to: str = "relay-test@example.net",
                           timeout: float = 10.0, probe_slots: asyncio.Semaphore | None = None) -> CheckResult:
    """Confirmed when some port accepts RCPT TO a foreign address from a foreign sender.

    Both addresses are in domains reserved for documentation (RFC 2606), foreign to any real server.
    Ports are tried in turn until one confirms; `timeout` bounds each session, which holds one of
    `probe_slots` while it runs.
    """
    if any(char in value for value in (helo, mail_from, rcpt_to) for char in "\r\n"):
        raise ValueError("line breaks in an SMTP argument would smuggle in other commands")
    sessions: list[Session] = []
    probe_slots = probe_slots or asyncio.Semaphore(1)
    for port in ports:
        async with probe_slots:
            sessions.append(await _session(ip, port, helo, mail_from, rcpt_to, timeout))
        if sessions[-1].relays:
            break
    verdict, summary = _verdict(sessions)
    details = {"ports": list(ports), "open_ports": [s.port for s in sessions if s.connected],
               "replies": {str(s.port): s.replies for s in sessions if s.replies}}
    rcpt_replies = [s.replies["RCPT"] for s in reversed(sessions) if "RCPT" in s.replies]
    if rcpt_replies:
        details["rcpt_reply"] = rcpt_replies[0]  # the confirming one, when there is one: it came last
    transcript = tuple(line for s in sessions for line in s.transcript.lines)
    return CheckResult("open-relay", ip, verdict, summary, transcript, details)
