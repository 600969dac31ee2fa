"""The open resolver check against real dnsmasq servers that answer only names configured locally."""
from __future__ import annotations

import asyncio
import socket

import pytest

from chalicelib.checks import Verdict, check_open_resolver

LOOPBACK = "127.0.0.1"
RECURSIVE = ("--address=/canary.test/127.0.0.1", "--address=/blocked.test/")
AUTHORITATIVE_ONLY = ("--auth-server=ns.canary.test,127.0.0.1", "--auth-zone=canary.test",
                      "--host-record=www.canary.test,127.0.0.1")


def check(port: int, qname: str):
    return asyncio.run(check_open_resolver(LOOPBACK, port=port, qname=qname, timeout=0.5))


def test_resolver_answering_a_stranger_with_recursion_is_confirmed(dnsmasq):
    result = check(dnsmasq(*RECURSIVE), "www.canary.test")
    assert result.verdict is Verdict.CONFIRMED
    assert result.details["answer"] == ["www.canary.test. 0 IN A 127.0.0.1"]
    assert "RA" in result.details["flags"].split()


@pytest.mark.parametrize("qname, rcode", [("www.canary.test", "NOERROR"), ("www.example.test", "REFUSED")])
def test_authoritative_only_server_is_refuted(dnsmasq, qname, rcode):
    """It answers for its own zone and refuses the rest, but never offers recursion (RA clear)."""
    result = check(dnsmasq(*AUTHORITATIVE_ONLY), qname)
    assert result.verdict is Verdict.REFUTED
    assert result.details["rcode"] == rcode
    assert "RA" not in result.details["flags"].split()


def test_resolver_refusing_recursion_is_refuted(dnsmasq):
    """With no upstream for the name, dnsmasq refuses to recurse: REFUSED although RA is set."""
    result = check(dnsmasq(*RECURSIVE), "www.example.test")
    assert result.verdict is Verdict.REFUTED
    assert result.summary == "refuses recursive queries (REFUSED)"


def test_resolver_offering_recursion_without_an_answer_is_inconclusive(dnsmasq):
    """NXDOMAIN from a filtering resolver neither proves nor disproves that it resolves for anyone."""
    result = check(dnsmasq(*RECURSIVE), "ads.blocked.test")
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.details["rcode"] == "NXDOMAIN"


def test_port_nobody_listens_on_is_refuted(closed_port):
    """Port unreachable comes back on the connected socket: nothing there can resolve for anyone."""
    result = check(closed_port, "www.canary.test")
    assert result.verdict is Verdict.REFUTED
    assert result.summary == f"nothing listens on UDP port {closed_port}"


@pytest.fixture
def silent_udp_port():
    """A bound UDP socket that reads nothing and answers nothing, like a firewall dropping queries."""
    with socket.socket(type=socket.SOCK_DGRAM) as silent:
        silent.bind((LOOPBACK, 0))
        yield silent.getsockname()[1]


def test_silence_after_every_try_is_inconclusive(silent_udp_port):
    """No reply proves nothing (a firewall, a rate limit, a lost packet); the tries stay in the transcript."""
    result = check(silent_udp_port, "www.canary.test")
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.summary == "no reply to 2 recursive queries"
    assert sum(" > query " in line for line in result.transcript) == 2
    assert sum("no reply within 0.5 s" in line for line in result.transcript) == 2
