"""The client's https path against a real TLS server on loopback: it connects to the address it checked,
while TLS still checks the certificate against the name in the URL."""
from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chalicelib.client import fetch


def certificate(subject: str, issuer_key, issuer: str, public_key, *, ca: bool, names=()) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def tls_node(tmp_path, monkeypatch):
    """An https server for `localhost` on 127.0.0.1, its certificate from a CA the client is made to trust."""
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("test CA", ca_key, "test CA", ca_key.public_key(), ca=True)
    server = certificate("localhost", ca_key, "test CA", server_key.public_key(), ca=False,
                         names=[x509.DNSName("localhost")])
    (tmp_path / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM) + server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"host": self.headers["Host"], "path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Echo)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(tmp_path / "server.pem")
    httpd.socket = server_tls.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    client_tls = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    monkeypatch.setattr(fetch, "_tls", lambda: client_tls)
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_https_by_name_reaches_the_checked_address_with_the_name_in_tls_and_host(tls_node):
    """Dev mode only because localhost is loopback; the same path runs for a public name."""
    answer = fetch.Fetcher(allow_local=True).get(f"https://localhost:{tls_node}/v1/refer/192.0.2.1")
    assert answer.status_code == 200
    assert answer.json() == {"host": f"localhost:{tls_node}", "path": "/v1/refer/192.0.2.1"}


def test_a_certificate_for_another_name_is_refused(tls_node):
    with pytest.raises(fetch.FetchError, match="certificate verify failed"):
        fetch.Fetcher(allow_local=True).get(f"https://{ipaddress.ip_address('127.0.0.1')}:{tls_node}/")


def test_outside_dev_mode_a_name_that_resolves_to_loopback_is_never_connected_to(tls_node):
    with pytest.raises(fetch.FetchError, match="special-purpose"):
        fetch.Fetcher().get(f"https://localhost:{tls_node}/")
