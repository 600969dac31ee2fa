"""The open proxy check against real proxies (pproxy) and a real web server, with a real canary."""
from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from chalicelib.checks import ProxyProtocol, Verdict, check_open_proxy

LOOPBACK = "127.0.0.1"
TIMEOUT = 1.0


def check(canary, port: int, protocols=tuple(ProxyProtocol)):
    return asyncio.run(check_open_proxy(LOOPBACK, canary, ports=[port], timeout=TIMEOUT, protocols=protocols))


@pytest.mark.parametrize("scheme, protocol", [
    ("http", ProxyProtocol.HTTP_CONNECT),
    ("http", ProxyProtocol.HTTP_GET),
    ("socks4", ProxyProtocol.SOCKS4),
    ("socks5", ProxyProtocol.SOCKS5),
])
def test_open_proxy_is_confirmed_when_canary_is_fetched_through_it(pproxy, canary, scheme, protocol):
    """Each protocol on its own proves the proxy by the canary's record, not by the proxy's reply."""
    port = pproxy(scheme)
    result = check(canary, port, protocols=[protocol])
    assert result.verdict is Verdict.CONFIRMED
    assert result.summary == f"{protocol.label} on {port} fetched the canary"
    assert result.details["protocol"] == protocol and result.details["port"] == port
    assert len(canary.hits) == 1
    assert any("was fetched through the suspect" in line for line in result.transcript)


def test_socks5_proxy_is_confirmed_when_every_protocol_is_tried(pproxy, canary):
    """The default run tries HTTP on a SOCKS port too; those failures do not hide the SOCKS5 hit."""
    port = pproxy("socks5")
    result = check(canary, port)
    assert result.verdict is Verdict.CONFIRMED
    assert result.details["protocol"] == ProxyProtocol.SOCKS5
    assert result.transcript[0].split()[1:3] == [f"{LOOPBACK}:{port}", "socks5"]  # the proof comes first


def test_web_server_that_answers_200_to_everything_is_refuted(plain_web_server, canary):
    """A captive portal says 200 to CONNECT and to absolute URIs, yet nothing reaches the canary."""
    result = check(canary, plain_web_server)
    assert result.verdict is Verdict.REFUTED
    assert result.details["open_ports"] == [plain_web_server]
    assert any("< HTTP/1.0 200 OK" in line for line in result.transcript)
    assert canary.hits == set()


@pytest.mark.parametrize("scheme", ["http", "socks5"])
def test_proxy_demanding_authentication_is_refuted(pproxy, canary, scheme):
    """A proxy that wants credentials is not open; an HTTP proxy's 407 is noted as such."""
    port = pproxy(scheme, auth="user:secret")
    result = check(canary, port)
    assert result.verdict is Verdict.REFUTED
    assert canary.hits == set()
    if scheme == "http":
        assert result.details["auth_required"] == [f"{port}/http-connect", f"{port}/http-get"]
        assert "demands authentication" in result.summary
        assert any("407 Proxy Authentication Required" in line for line in result.transcript)


def test_closed_port_is_refuted(canary, closed_port):
    result = check(canary, closed_port)
    assert result.verdict is Verdict.REFUTED
    assert result.details["open_ports"] == []
    assert result.summary == "none of 1 proxy ports accepts connections"
    assert any("connection refused" in line for line in result.transcript)


def test_port_that_accepts_and_never_answers_is_inconclusive(canary, silent_port):
    """A tarpit, or a proxy too slow to reach the canary in time: silence proves neither way."""
    result = check(canary, silent_port)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.details["open_ports"] == [silent_port]
    assert result.summary == (f"port(s) {silent_port} accepted connections, but the proxy probes there did not "
                              f"finish within {TIMEOUT:g} s")
    assert sum(line.endswith("# timed out") for line in result.transcript) == len(ProxyProtocol)


@pytest.mark.parametrize("scheme, protocol", [("http", ProxyProtocol.HTTP_CONNECT), ("socks5", ProxyProtocol.SOCKS5)])
def test_tunnel_reaches_an_https_canary(pproxy, https_canary, scheme, protocol):
    """A node behind HTTPS still confirms: TLS runs end to end through the tunnel."""
    result = check(https_canary, pproxy(scheme), protocols=[protocol])
    assert result.verdict is Verdict.CONFIRMED
    assert any("TLS established through the tunnel" in line for line in result.transcript)


@pytest.fixture
def slow_proxy() -> Iterator:
    """slow_proxy(speaks) -> port: a proxy of one kind ("http" or "socks") that takes longer than the check's
    timeout to reach anything, and drops a connection at once when it is spoken to in the other protocol."""
    servers, stop = [], threading.Event()

    def start(speaks: str) -> int:
        server = socket.create_server(("127.0.0.1", 0))
        server.settimeout(0.2)
        servers.append(server)

        def serve_one(conn: socket.socket) -> None:
            with conn:
                first = conn.recv(1)
                if not first or (first[0] in (4, 5)) != (speaks == "socks"):
                    return                              # not its protocol: dropped at once
                if first == b"\x05":
                    conn.recv(2)
                    conn.sendall(b"\x05\x00")          # SOCKS5: no authentication needed, go on
                stop.wait(TIMEOUT * 3)                  # then slow to reach the target

        def accept() -> None:
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except OSError:
                    continue
                threading.Thread(target=serve_one, args=(conn,), daemon=True).start()
        threading.Thread(target=accept, daemon=True).start()
        return server.getsockname()[1]

    yield start
    stop.set()
    for server in servers:
        server.close()


@pytest.mark.parametrize("speaks", ["http", "socks"])
def test_a_proxy_too_slow_to_answer_is_inconclusive_though_it_drops_the_other_protocol_at_once(canary, slow_proxy,
                                                                                                speaks):
    """Its own protocol's probes time out, the other kind is refused at once: that is no answer either way."""
    port = slow_proxy(speaks)
    result = check(canary, port)
    assert result.verdict is Verdict.INCONCLUSIVE, result.summary
    assert result.details["open_ports"] == [port] and canary.hits == set()
