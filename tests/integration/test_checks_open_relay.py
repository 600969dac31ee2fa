"""The open relay check against a real SMTP server (aiosmtpd) whose RCPT answer each test chooses."""
from __future__ import annotations

import asyncio

import pytest

from chalicelib.checks import Verdict, check_open_relay

LOOPBACK = "127.0.0.1"


def check(*ports: int):
    return asyncio.run(check_open_relay(LOOPBACK, ports=ports, timeout=2.0))


def sent_commands(result) -> list[str]:
    return [line.split(" > ", 1)[1].split()[0] for line in result.transcript if " > " in line]


def test_open_relay_is_confirmed_by_accepted_foreign_rcpt_without_sending_data(smtp_server):
    """Accepting RCPT TO a stranger is the proof; the session ends with RSET and QUIT, never DATA."""
    port, handler = smtp_server(None)
    result = check(port)
    assert result.verdict is Verdict.CONFIRMED
    assert result.details["rcpt_reply"] == "250 2.1.5 OK"
    assert result.summary == f"SMTP on {port} accepted a foreign recipient: 250 2.1.5 OK"
    assert sent_commands(result) == ["EHLO", "MAIL", "RCPT", "RSET", "QUIT"]
    assert handler.messages == []


def test_relay_rejecting_foreign_rcpt_is_refuted(smtp_server):
    port, handler = smtp_server("550 5.7.1 Relaying denied")
    result = check(port)
    assert result.verdict is Verdict.REFUTED
    assert result.details["rcpt_reply"] == "550 5.7.1 Relaying denied"
    assert "DATA" not in sent_commands(result)
    assert handler.messages == []


def test_greylisting_server_is_inconclusive(smtp_server):
    """A temporary failure says neither yes nor no: the same RCPT may pass in ten minutes."""
    port, _ = smtp_server("451 4.7.1 Greylisted, try again later")
    assert check(port).verdict is Verdict.INCONCLUSIVE


def test_relay_check_tries_the_next_port_when_one_is_closed(smtp_server, closed_port):
    port, _ = smtp_server(None)
    result = check(closed_port, port)
    assert result.verdict is Verdict.CONFIRMED
    assert result.details["open_ports"] == [port]


def test_closed_smtp_ports_are_refuted(closed_port):
    result = check(closed_port)
    assert result.verdict is Verdict.REFUTED
    assert result.summary == "none of 1 SMTP ports accepts connections"


def test_line_breaks_in_an_address_are_refused_before_connecting(smtp_server):
    """An address carrying CRLF could smuggle DATA into the session; the check refuses to start."""
    port, handler = smtp_server(None)
    with pytest.raises(ValueError, match="line breaks"):
        asyncio.run(check_open_relay(LOOPBACK, ports=[port], rcpt_to="a@example.net>\r\nDATA\r\n"))
    assert handler.messages == []


def test_smtp_port_that_never_greets_is_inconclusive(silent_port):
    """Accepting the connection and then staying silent past the timeout proves nothing: a slow or
    overloaded server is not a closed one, and a refutation would halve the reporters' reputation."""
    result = check(silent_port)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.summary == f"SMTP on {silent_port} timed out before its greeting"
    assert result.details["open_ports"] == [silent_port]
    assert any(line.endswith("# timed out") for line in result.transcript)
