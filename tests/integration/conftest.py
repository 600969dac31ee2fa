"""Real servers on loopback for the network checks: a canary, pproxy, a plain web server, aiosmtpd, dnsmasq.

Every server listens on 127.0.0.1 on a free port, is started by its fixture and stopped after the
test; every wait for one is bounded.
"""
from __future__ import annotations

import contextlib
import ipaddress
import secrets
import ssl
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LOOPBACK = "127.0.0.1"
HERE = Path(__file__).parent
STARTUP_TIMEOUT = 10.0
TEST_TIMEOUT = 30


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A hung server fails its test in seconds, not the suite's five minutes."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT))


def free_port() -> int:
    """A loopback port free for both TCP and UDP right now (a DNS server wants both)."""
    while True:
        with socket.socket() as tcp, socket.socket(type=socket.SOCK_DGRAM) as udp:
            tcp.bind((LOOPBACK, 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind((LOOPBACK, port))
            except OSError:
                continue
            return port


def wait_for_tcp(port: int, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before listening")
        try:
            socket.create_connection((LOOPBACK, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {LOOPBACK}:{port} after {STARTUP_TIMEOUT} s")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., int]]:
    """Start a server process that will listen on the port it is given; stop them all afterwards.

    `spawn(lambda port: argv)` returns the port once the server accepts TCP connections on it.
    """
    processes: list[subprocess.Popen] = []

    def start(argv_for_port: Callable[[int], list[str]]) -> int:
        port = free_port()
        log = open(tmp_path / f"server-{port}.log", "wb")
        process = subprocess.Popen(argv_for_port(port), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        processes.append(process)
        wait_for_tcp(port, process)
        return port

    yield start
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture
def pproxy(spawn) -> Callable[[str], int]:
    """`pproxy("socks5")` or `pproxy("http", auth="user:pass")`: a real proxy on loopback, returns its port."""
    def start(schemes: str, auth: str | None = None) -> int:
        suffix = f"#{auth}" if auth else ""
        return spawn(lambda port: [sys.executable, "-m", "pproxy", "-l", f"{schemes}://{LOOPBACK}:{port}{suffix}"])
    return start


@pytest.fixture
def dnsmasq(spawn, tmp_path: Path) -> Callable[..., int]:
    """dnsmasq with a private configuration and no upstream servers, so nothing recurses off this host."""
    binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"

    def start(*options: str) -> int:
        return spawn(lambda port: [
            binary, "--keep-in-foreground", "--conf-file=/dev/null", f"--port={port}",
            f"--listen-address={LOOPBACK}", "--bind-interfaces", "--no-resolv", "--no-hosts",
            f"--pid-file={tmp_path / f'dnsmasq-{port}.pid'}", "--user=root", "--log-facility=-", "--log-queries",
            *options])
    return start


class StaticCanary:
    """The node's canary, for tests: a real HTTP server on loopback that records each nonce fetched."""

    def __init__(self, origin: str) -> None:
        self.base = f"{origin}/v1/canary/"
        self.hits: set[str] = set()
        self.lock = threading.Lock()

    def new_nonce(self) -> str:
        return secrets.token_urlsafe(16)

    def url(self, nonce: str) -> str:
        return self.base + nonce

    async def was_hit(self, nonce: str) -> bool:
        with self.lock:
            return nonce in self.hits

    def record(self, path: str) -> bool:
        prefix = "/v1/canary/"
        if not path.startswith(prefix):
            return False
        with self.lock:
            self.hits.add(path[len(prefix):])
        return True


@contextlib.contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler],
               tls: ssl.SSLContext | None = None) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer((LOOPBACK, 0), handler)
    if tls:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


class QuietHandler(BaseHTTPRequestHandler):
    timeout = 5  # a client that never finishes its request line does not hold a thread for ever

    def log_message(self, format: str, *args) -> None:
        pass


class CanaryHandler(QuietHandler):
    def do_GET(self) -> None:
        found = self.server.canary.record(self.path)
        self.send_response(200 if found else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def canary() -> Iterator[StaticCanary]:
    with serve_http(CanaryHandler) as server:
        server.canary = StaticCanary(f"http://{LOOPBACK}:{server.server_address[1]}")
        yield server.canary


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1, as the node's HTTPS canary would present."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netimmune test canary")])
    now = datetime.now(timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(hours=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
                                  critical=False)
                   .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "canary.crt", directory / "canary.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def https_canary(tmp_path: Path) -> Iterator[StaticCanary]:
    """The canary behind TLS, as a node on AWS serves it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed_certificate(tmp_path))
    with serve_http(CanaryHandler, context) as server:
        server.canary = StaticCanary(f"https://{LOOPBACK}:{server.server_address[1]}")
        yield server.canary


@pytest.fixture
def plain_web_server() -> Iterator[int]:
    """A web server that answers 200 to GET, CONNECT, anything, like a captive portal: not a proxy."""
    class AlwaysOk(QuietHandler):
        def answer(self) -> None:
            body = b"<html>Welcome to the hotel network</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_HEAD = do_POST = do_CONNECT = answer

    with serve_http(AlwaysOk) as server:
        yield server.server_address[1]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, so no other fixture takes it, but not listening."""
    with socket.socket() as holder:
        holder.bind((LOOPBACK, 0))
        yield holder.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel does) and never says a word: a tarpit."""
    with socket.create_server((LOOPBACK, 0), backlog=64) as server:
        yield server.getsockname()[1]


class RecordingSmtpHandler:
    """aiosmtpd handler: answers RCPT with `rcpt_reply` (None: accept anything) and records any message."""

    def __init__(self, rcpt_reply: str | None) -> None:
        self.rcpt_reply = rcpt_reply
        self.messages: list[bytes] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(envelope.content)
        return "250 2.0.0 queued"


@pytest.fixture
def smtp_server() -> Iterator[Callable[[str | None], tuple[int, RecordingSmtpHandler]]]:
    """`smtp_server(rcpt_reply)` starts aiosmtpd on loopback; returns its port and the recording handler."""
    controllers: list[Controller] = []

    def start(rcpt_reply: str | None) -> tuple[int, RecordingSmtpHandler]:
        handler = RecordingSmtpHandler(rcpt_reply)
        controller = Controller(handler, hostname=LOOPBACK, port=free_port(), ready_timeout=STARTUP_TIMEOUT)
        controller.start()
        controllers.append(controller)
        return controller.port, handler

    yield start
    for controller in controllers:
        controller.stop()
