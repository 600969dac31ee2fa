"""Open proxy check: ask the suspect to fetch this node's canary, and believe only the canary.

Every port is tried with HTTP CONNECT, HTTP GET with an absolute URI, SOCKS4(a) and SOCKS5 without
authentication, each on its own connection with its own nonce. The verdict is confirmed only when
the canary saw the nonce, so a web server or captive portal that answers 200 to anything is never
called a proxy. A proxy that demands authentication is refuted: it is not open. A port whose proxy
probes time out proves nothing (a proxy answers only once it reached the canary, which may be slow),
so it makes the result inconclusive rather than refuted, even when the probes of the other kind are
refused at once: an HTTP proxy drops SOCKS bytes, a SOCKS proxy drops HTTP.
"""
from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from .canary import Canary
from .result import CheckResult, Transcript, Verdict, endpoint
from .tcp import PROBE_FAILURES, ProtocolViolation, close, connect, describe_failure

Reader, Writer = asyncio.StreamReader, asyncio.StreamWriter

# The ports open proxies are usually found on: web and cache proxies, SOCKS, Tor's SOCKS port.
DEFAULT_PROXY_PORTS = (80, 1080, 3128, 8000, 8080, 8081, 8888, 9050)
DEFAULT_PROXY_CONCURRENCY = 8


class ProxyProtocol(StrEnum):
    HTTP_CONNECT = "http-connect"
    HTTP_GET = "http-get"
    SOCKS4 = "socks4"
    SOCKS5 = "socks5"

    @property
    def label(self) -> str:
        return {"http-connect": "HTTP CONNECT", "http-get": "HTTP GET"}.get(self.value, self.value.upper())


class Outcome(StrEnum):
    CLOSED = "closed"                # nothing accepted the connection
    NOT_A_PROXY = "not-a-proxy"      # connected, but the reply refused or was not the protocol
    TIMED_OUT = "timed-out"          # connected, then no answer in time: proves neither
    AUTH_REQUIRED = "auth-required"  # a proxy, but not an open one
    NO_HIT = "no-hit"                # the request went through, and the canary never saw it
    HIT = "hit"                      # the canary saw this probe's nonce


@dataclass(frozen=True)
class CanaryTarget:
    """Where the suspect must go: the parts of the canary URL each protocol needs."""

    url: str
    host: str
    port: int
    path: str
    tls: bool

    @classmethod
    def parse(cls, url: str) -> CanaryTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"canary URL must be http(s)://host/…, got {url!r}")
        tls = parts.scheme == "https"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(url, parts.hostname, parts.port or (443 if tls else 80), path, tls)

    @property
    def authority(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass
class Attempt:
    port: int
    protocol: ProxyProtocol
    transcript: Transcript
    outcome: Outcome = Outcome.CLOSED


def _tls_context() -> ssl.SSLContext:
    """No certificate checks: the proof is the canary's own record of the hit, not what comes back."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _send(writer: Writer, transcript: Transcript, data: bytes) -> None:
    transcript.sent(data)
    writer.write(data)
    await writer.drain()


async def _receive(reader: Reader, transcript: Transcript, size: int) -> bytes:
    data = await reader.readexactly(size)
    transcript.received(data)
    return data


async def _read_http_status(reader: Reader, transcript: Transcript) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    transcript.received(head)
    fields = head.split(b"\r\n", 1)[0].split()
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
        raise ProtocolViolation("not an HTTP reply")
    return int(fields[1])


async def _fetch_canary(reader: Reader, writer: Writer,
                        target: CanaryTarget, transcript: Transcript) -> Outcome:
    """Through an established tunnel: GET the canary path, in TLS when the canary is https."""
    if target.tls:
        await writer.start_tls(_tls_context(), server_hostname=target.host)
        transcript.note("TLS established through the tunnel")
    request = f"GET {target.path} HTTP/1.1\r\nHost: {target.authority}\r\nConnection: close\r\n\r\n"
    await _send(writer, transcript, request.encode())
    await _read_http_status(reader, transcript)
    return Outcome.NO_HIT


async def _http_connect(reader: Reader, writer: Writer, target: CanaryTarget, transcript: Transcript) -> Outcome:
    request = f"CONNECT {target.authority} HTTP/1.1\r\nHost: {target.authority}\r\n\r\n"
    await _send(writer, transcript, request.encode())
    status = await _read_http_status(reader, transcript)
    if status == 407:
        transcript.note("proxy demands authentication")
        return Outcome.AUTH_REQUIRED
    if not 200 <= status < 300:
        return Outcome.NOT_A_PROXY
    return await _fetch_canary(reader, writer, target, transcript)


async def _http_get(reader: Reader, writer: Writer, target: CanaryTarget, transcript: Transcript) -> Outcome:
    request = f"GET {target.url} HTTP/1.1\r\nHost: {target.authority}\r\nConnection: close\r\n\r\n"
    await _send(writer, transcript, request.encode())
    if await _read_http_status(reader, transcript) == 407:
        transcript.note("proxy demands authentication")
        return Outcome.AUTH_REQUIRED
    return Outcome.NO_HIT


def _ipv4(host: str) -> ipaddress.IPv4Address | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return address if isinstance(address, ipaddress.IPv4Address) else None


async def _socks4(reader: Reader, writer: Writer, target: CanaryTarget, transcript: Transcript) -> Outcome:
    """SOCKS4 for an IPv4 canary, SOCKS4a (the server resolves the name) for anything else."""
    address = _ipv4(target.host)
    head = b"\x04\x01" + target.port.to_bytes(2, "big")
    request = head + (address.packed + b"\x00" if address else b"\x00\x00\x00\x01\x00" + target.host.encode() + b"\x00")
    await _send(writer, transcript, request)
    reply = await _receive(reader, transcript, 8)
    if reply[0] != 0:
        raise ProtocolViolation("not a SOCKS4 reply")
    if reply[1] in (0x5C, 0x5D):
        transcript.note("proxy demands identd authentication")
        return Outcome.AUTH_REQUIRED
    if reply[1] != 0x5A:
        transcript.note(f"request rejected (0x{reply[1]:02x})")
        return Outcome.NOT_A_PROXY
    return await _fetch_canary(reader, writer, target, transcript)


def _socks5_address(host: str) -> bytes:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode("idna")
        return b"\x03" + len(name).to_bytes(1, "big") + name
    return (b"\x01" if address.version == 4 else b"\x04") + address.packed


async def _socks5(reader: Reader, writer: Writer, target: CanaryTarget, transcript: Transcript) -> Outcome:
    await _send(writer, transcript, b"\x05\x01\x00")  # one method offered: no authentication
    version, method = await _receive(reader, transcript, 2)
    if version != 5:
        raise ProtocolViolation("not a SOCKS5 reply")
    if method != 0:
        transcript.note("proxy refuses unauthenticated use" if method == 0xFF
                        else f"proxy chose method 0x{method:02x}, not the 'no authentication' offered")
        return Outcome.AUTH_REQUIRED
    await _send(writer, transcript, b"\x05\x01\x00" + _socks5_address(target.host) + target.port.to_bytes(2, "big"))
    version, reply, _, kind = await _receive(reader, transcript, 4)
    if version != 5:
        raise ProtocolViolation("not a SOCKS5 reply")
    if reply != 0:
        transcript.note(f"request rejected (0x{reply:02x})")
        return Outcome.NOT_A_PROXY
    if kind not in (1, 3, 4):
        raise ProtocolViolation(f"unknown SOCKS5 address type 0x{kind:02x}")
    size = {1: 4, 4: 16}.get(kind) or (await _receive(reader, transcript, 1))[0]
    await _receive(reader, transcript, size + 2)  # the proxy's bound address and port
    return await _fetch_canary(reader, writer, target, transcript)


HANDSHAKES = {
    ProxyProtocol.HTTP_CONNECT: _http_connect,
    ProxyProtocol.HTTP_GET: _http_get,
    ProxyProtocol.SOCKS4: _socks4,
    ProxyProtocol.SOCKS5: _socks5,
}


async def _probe(ip: str, attempt: Attempt, canary: Canary, timeout: float) -> Attempt:
    """One protocol on one port with a fresh nonce; the canary, not the reply, decides."""
    nonce = canary.new_nonce()
    target = CanaryTarget.parse(canary.url(nonce))
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await connect(ip, attempt.port)
            attempt.outcome = Outcome.NOT_A_PROXY
            try:
                attempt.outcome = await HANDSHAKES[attempt.protocol](reader, writer, target, attempt.transcript)
            finally:
                await close(writer)
    except PROBE_FAILURES as exc:
        attempt.transcript.note(describe_failure(exc))
        if isinstance(exc, TimeoutError) and attempt.outcome is not Outcome.CLOSED:
            attempt.outcome = Outcome.TIMED_OUT
    except asyncio.CancelledError:
        attempt.transcript.note("stopped before finishing")
        raise
    if await canary.was_hit(nonce):
        attempt.outcome = Outcome.HIT
        attempt.transcript.note(f"canary {nonce} was fetched through the suspect")
    elif attempt.outcome is Outcome.NO_HIT:
        attempt.transcript.note("the canary never saw the request")
    return attempt


async def _run_until_hit(ip: str, attempts: list[Attempt], canary: Canary, timeout: float,
                         probe_slots: asyncio.Semaphore) -> None:
    """Run every attempt, one per free slot, and stop all of them at the first canary hit."""
    async def bounded(attempt: Attempt) -> Attempt:
        async with probe_slots:
            return await _probe(ip, attempt, canary, timeout)

    tasks = [asyncio.create_task(bounded(attempt)) for attempt in attempts]
    try:
        for finished in asyncio.as_completed(tasks):
            if (await finished).outcome is Outcome.HIT:
                break
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


HTTP_PROBES, SOCKS_PROBES = (ProxyProtocol.HTTP_CONNECT, ProxyProtocol.HTTP_GET), (ProxyProtocol.SOCKS4,
                                                                                     ProxyProtocol.SOCKS5)
HTTP_ANSWERS = (Outcome.NO_HIT, Outcome.AUTH_REQUIRED)   # an HTTP status came back


def _unsettled(port_attempts: list[Attempt]) -> bool:
    """Whether a port that nothing proved open may still be a slow open proxy. A proxy answers a request only
    once it reached the canary, so: every HTTP probe timed out (a web server answers HTTP at once), or every SOCKS
    probe timed out on a port that answered no HTTP (a web server may wait in silence for the rest of a SOCKS
    greeting, but it answers HTTP)."""
    outcomes = {a.protocol: a.outcome for a in port_attempts}

    def all_timed_out(protocols: tuple[ProxyProtocol, ...]) -> bool:
        tried = [outcomes[p] for p in protocols if p in outcomes]
        return bool(tried) and all(outcome is Outcome.TIMED_OUT for outcome in tried)

    spoke_http = any(outcomes.get(p) in HTTP_ANSWERS for p in HTTP_PROBES)
    return all_timed_out(HTTP_PROBES) or (all_timed_out(SOCKS_PROBES) and not spoke_http)


async def check_open_proxy(ip: str, canary: Canary, ports: Sequence[int] = DEFAULT_PROXY_PORTS,
                           timeout: float = 5.0, *, protocols: Sequence[ProxyProtocol] = tuple(ProxyProtocol),
                           probe_slots: asyncio.Semaphore | None = None) -> CheckResult:
    """Confirmed when a request for the canary made through ip reached it; refuted when every open port
    answered without that happening; inconclusive when an open port may be a proxy too slow to answer in time.

    `timeout` bounds each attempt (connect, handshake, fetch); each holds one of `probe_slots` while it runs.
    """
    attempts = [Attempt(port, protocol, Transcript(f"{endpoint(ip, port)} {protocol}"))
                for port in ports for protocol in map(ProxyProtocol, protocols)]
    await _run_until_hit(ip, attempts, canary, timeout, probe_slots or asyncio.Semaphore(DEFAULT_PROXY_CONCURRENCY))
    open_ports = sorted({a.port for a in attempts if a.outcome is not Outcome.CLOSED})
    silent = [port for port in open_ports if _unsettled([a for a in attempts if a.port == port])]
    auth_required = [f"{a.port}/{a.protocol}" for a in attempts if a.outcome is Outcome.AUTH_REQUIRED]
    details = {"ports": list(ports), "open_ports": open_ports, "auth_required": auth_required}
    hit = next((a for a in attempts if a.outcome is Outcome.HIT), None)
    ordered = sorted(attempts, key=lambda a: a is not hit)  # the proof first
    transcript = tuple(line for a in ordered for line in a.transcript.lines)
    if hit:
        summary = f"{hit.protocol.label} on {hit.port} fetched the canary"
        return CheckResult("open-proxy", ip, Verdict.CONFIRMED, summary, transcript,
                           {**details, "port": hit.port, "protocol": str(hit.protocol)})
    if silent:
        summary = (f"port(s) {', '.join(map(str, silent))} accepted connections, "
                   f"but the proxy probes there did not finish within {timeout:g} s")
        return CheckResult("open-proxy", ip, Verdict.INCONCLUSIVE, summary, transcript, details)
    if auth_required:
        summary = f"proxy on {', '.join(auth_required)} demands authentication; nothing reached the canary"
    elif open_ports:
        summary = f"open port(s) {', '.join(map(str, open_ports))}, but no request through them reached the canary"
    else:
        summary = f"none of {len(ports)} proxy ports accepts connections"
    return CheckResult("open-proxy", ip, Verdict.REFUTED, summary, transcript, details)
