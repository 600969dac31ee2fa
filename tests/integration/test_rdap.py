"""The unowned-space fallback for real: a local RDAP server replays recorded registry answers, aiosmtpd takes the mail.

The recorded answers (rdap_responses/<registry>/) follow what ARIN, RIPE and APNIC really send, with
documentation addresses and example.net mailboxes. Their `links` name the real registries; the tests
prove that nothing follows them: every request lands on the loopback server, on the path asked.
"""
from __future__ import annotations

import email
import ipaddress
import json
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from email import policy
from pathlib import Path
from urllib.parse import unquote

import pytest

from chalicelib.client.fetch import Fetcher
from chalicelib.client.rdap import (MailError, RdapError, find_abuse_contact, parse_bootstrap, rdap_base_urls,
                                    report_to_abuse_contact)
from chalicelib.protocol.categories import by_slug
from chalicelib.protocol.report import Evidence, build_report
from tests.integration.conftest import LOOPBACK, QuietHandler, serve_http

RESPONSES = Path(__file__).parent / "rdap_responses"
REPORTER = {"org": "Example NOC", "contact": "noc@example.org", "domain": "example.org"}
OBSERVED = datetime(2026, 11, 26, 11, 58, tzinfo=timezone.utc)


def recorded_network(registry: str, text: str) -> dict | None:
    """The most specific recorded network of `registry` that holds the address, as a registry answers."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    holding = []
    for path in (RESPONSES / registry / "ip").glob("*.json"):
        network = json.loads(path.read_text())
        first, last = ipaddress.ip_address(network["startAddress"]), ipaddress.ip_address(network["endAddress"])
        if first.version == address.version and first <= address <= last:
            holding.append((int(last) - int(first), network))
    return min(holding, key=lambda pair: pair[0])[1] if holding else None


def recorded_entity(registry: str, handle: str) -> dict | None:
    path = RESPONSES / registry / "entity" / f"{handle}.json"
    return json.loads(path.read_text()) if handle.isprintable() and "/" not in handle and path.is_file() else None


class RecordedRdap(QuietHandler):
    """`/<registry>/ip/<address>` and `/<registry>/entity/<handle>` from the recordings, 404 for the rest;
    `/moved/<path>` redirects to `/<path>`, as a registry does for space another one holds, and `/away/<path>`
    to the same path on this server by another name (localhost), which no bootstrap names; `/deep/…`
    answers JSON nested 100,000 deep."""

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        parts = unquote(self.path).strip("/").split("/")
        if parts[0] in ("moved", "away"):
            origin = f"http://localhost:{self.server.server_address[1]}" if parts[0] == "away" else ""
            self.send_response(301)
            self.send_header("Location", origin + "/" + "/".join(parts[1:]))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if parts[0] == "deep":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"[" * 100_000)
            return
        document = None
        if len(parts) == 3 and parts[1] == "ip":
            document = recorded_network(parts[0], parts[2])
        elif len(parts) == 3 and parts[1] == "entity":
            document = recorded_entity(parts[0], parts[2])
        status = 200 if document else 404
        body = json.dumps(document or {"errorCode": 404, "title": "Not Found",
                                       "description": ["The server has not found anything matching the query."]})
        self.send_response(status)
        self.send_header("Content-Type", "application/rdap+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())


@pytest.fixture
def rdap_server() -> Iterator:
    with serve_http(RecordedRdap) as server:
        server.requests = []
        server.origin = f"http://{LOOPBACK}:{server.server_address[1]}"
        yield server


@pytest.fixture
def bootstrap(rdap_server):
    """IANA's bootstrap as the tests need it: the documentation ranges, held by registries on loopback."""
    origin = rdap_server.origin
    return parse_bootstrap({"version": "1.0", "services": [
        [["192.0.2.0/24"], [f"{origin}/arin/"]],
        [["198.51.100.0/24", "2001:db8::/32"], [f"{origin}/ripe/"]],
        [["203.0.113.0/24", "2001:db8:2000::/36"], [f"{origin}/apnic/"]],
    ]})


@pytest.fixture
def http() -> Fetcher:
    """Dev mode: the recorded registries are plain http on loopback."""
    return Fetcher(allow_local=True, timeout=2.0)


def test_shipped_bootstrap_names_the_registry_with_https_first() -> None:
    """The IANA files ship inside the package; https is preferred where a registry offers both.

    Pure look-ups in the shipped files: none of these addresses is ever contacted."""
    assert rdap_base_urls("23.0.0.1") == ["https://rdap.arin.net/registry/", "http://rdap.arin.net/registry/"]
    assert rdap_base_urls("::ffff:23.0.0.1")[0] == "https://rdap.arin.net/registry/"
    assert rdap_base_urls("193.0.6.139") == ["https://rdap.db.ripe.net/"]
    assert rdap_base_urls("2001:200::1") == ["https://rdap.apnic.net/"]
    assert rdap_base_urls("127.0.0.1") == []  # loopback: no registry holds it


def test_bootstrap_match_is_the_longest_prefix() -> None:
    bootstrap = parse_bootstrap({"version": "1.0", "services": [[["2001:db8::/32"], ["https://wide.example/"]],
                                                                [["2001:db8:8000::/33"], ["https://narrow.example"]]]})
    assert rdap_base_urls("2001:db8:8000::1", bootstrap) == ["https://narrow.example/"]
    assert rdap_base_urls("2001:db8::1", bootstrap) == ["https://wide.example/"]


@pytest.mark.parametrize("ip, registry, email, handle, network", [
    ("192.0.2.10", "arin", "abuse@example.net", "ABUSE4242-ARIN", "EXAMPLE-NET-1"),
    ("198.51.100.7", "ripe", "abuse@example.net", "EAD7-RIPE", "EXAMPLE-NL-NET"),
    ("203.0.113.9", "apnic", "abuse@example.net", "IRT-EXAMPLE-AU", "EXAMPLE-AU"),
    ("2001:db8:2000::5", "apnic", "abuse-v6@example.net", "IRT-EXAMPLE-JP", "EXAMPLE-JP-V6"),
], ids=["arin-poc-nested-in-org", "ripe-abuse-c-under-org-typed-address", "apnic-irt-top-level-pref", "apnic-ipv6"])
def test_abuse_contact_is_found_in_each_registry_style(rdap_server, bootstrap, http, ip, registry, email, handle,
                                                       network) -> None:
    """Never the NOC, hostmaster or security mailbox listed beside it; one request, to the registry holding it."""
    contact = find_abuse_contact(ip, http, bootstrap)
    assert (contact.email, contact.handle, contact.network) == (email, handle, network)
    assert contact.server == f"{rdap_server.origin}/{registry}/"
    assert rdap_server.requests == [f"/{registry}/ip/{ip}"]


def test_abuse_entity_given_only_by_handle_is_fetched_from_the_same_server(rdap_server, bootstrap, http) -> None:
    """The answer's self link names rdap.arin.net; the entity is asked of the server that answered instead."""
    contact = find_abuse_contact("192.0.2.200", http, bootstrap)
    assert (contact.email, contact.name) == ("abuse-desk@example.net", "Example Hosting Abuse Desk")
    assert rdap_server.requests == ["/arin/ip/192.0.2.200", "/arin/entity/ABUSE-EXHOST2-ARIN"]


def test_network_without_abuse_entity_has_no_contact(rdap_server, bootstrap, http) -> None:
    """A technical contact is not an abuse contact: the fallback says there is none rather than guess."""
    assert find_abuse_contact("2001:db8:1000::1", http, bootstrap) is None
    assert rdap_server.requests == ["/ripe/ip/2001:db8:1000::1"]


def test_address_the_registry_does_not_hold_has_no_contact(rdap_server, bootstrap, http) -> None:
    assert find_abuse_contact("2001:db8:f000::1", http, bootstrap) is None
    assert rdap_server.requests == ["/ripe/ip/2001:db8:f000::1"]


def test_address_no_registry_holds_asks_nobody(rdap_server, bootstrap, http) -> None:
    assert find_abuse_contact("100.64.0.1", http, bootstrap) is None
    assert rdap_server.requests == []


def test_redirect_to_the_registry_holding_the_space_is_followed(rdap_server, bootstrap, http) -> None:
    contact = find_abuse_contact("192.0.2.10", http, bootstrap, base_url_override=f"{rdap_server.origin}/moved/arin")
    assert contact.email == "abuse@example.net"
    assert contact.server == f"{rdap_server.origin}/arin/"
    assert rdap_server.requests == ["/moved/arin/ip/192.0.2.10", "/arin/ip/192.0.2.10"]


def test_redirect_to_a_server_the_bootstrap_does_not_name_is_not_followed(rdap_server, bootstrap, http) -> None:
    """The answer names the mailbox that gets the report and its evidence: only a registry may give it."""
    with pytest.raises(RdapError, match="redirected to http://localhost:.*not an RDAP server the bootstrap names"):
        find_abuse_contact("192.0.2.10", http, bootstrap, base_url_override=f"{rdap_server.origin}/away/arin")
    assert rdap_server.requests == ["/away/arin/ip/192.0.2.10"]


def test_plain_http_registry_is_not_asked_outside_dev_mode(rdap_server, closed_port) -> None:
    """Not even when the https server of the same entry is down: the answer would travel unauthenticated."""
    bootstrap = parse_bootstrap({"version": "1.0", "services": [
        [["192.0.2.0/24"], [f"https://{LOOPBACK}:{closed_port}/", f"{rdap_server.origin}/arin/"]]]})
    with pytest.raises(RdapError) as failed:
        find_abuse_contact("192.0.2.10", Fetcher(), bootstrap)
    assert f"refused endpoint {rdap_server.origin}/arin/ip/192.0.2.10: it is not https" in str(failed.value)
    assert rdap_server.requests == []


def test_json_nested_too_deep_is_an_rdap_error(rdap_server, http) -> None:
    with pytest.raises(RdapError, match="did not answer with JSON"):
        find_abuse_contact("192.0.2.10", http, base_url_override=f"{rdap_server.origin}/deep/")


def test_next_base_url_is_tried_when_the_first_is_down(rdap_server, http, closed_port) -> None:
    bootstrap = parse_bootstrap({"version": "1.0", "services": [
        [["192.0.2.0/24"], [f"http://{LOOPBACK}:{closed_port}/", f"{rdap_server.origin}/arin/"]]]})
    assert find_abuse_contact("192.0.2.10", http, bootstrap).email == "abuse@example.net"


def test_silent_registry_is_an_error_not_a_missing_contact(silent_port) -> None:
    """A timeout must not read as "no abuse contact": the caller tells the person to try again."""
    started = time.monotonic()
    with pytest.raises(RdapError, match="did not answer within 0.5 s"):
        find_abuse_contact("192.0.2.10", Fetcher(allow_local=True, timeout=0.5),
                           base_url_override=f"http://{LOOPBACK}:{silent_port}/")
    assert time.monotonic() - started < 5


def unowned_report() -> dict:
    log = Evidence("text/plain", b"CONNECT canary via 198.51.100.7:3128 -> 200\n", "proxy log")
    return build_report(by_slug("open-proxy"), "198.51.100.7", REPORTER, OBSERVED, evidence=(log,), port=3128,
                        comment="Squid answers CONNECT for anyone")


def assert_arf_carries(raw: bytes, report: dict) -> None:
    """What an abuse desk's parser needs: multipart/report, the feedback-report fields, the X-ARF JSON."""
    message = email.message_from_bytes(raw, policy=policy.default)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "feedback-report"
    assert message["To"] == "abuse@example.net"
    feedback = next(part for part in message.walk() if part.get_content_type() == "message/feedback-report")
    fields = email.message_from_bytes(feedback.get_content(), policy=policy.default)
    assert (fields["Feedback-Type"], fields["Source-IP"]) == ("xarf", "198.51.100.7")
    attachment = next(part for part in message.iter_attachments() if part.get_filename() == "xarf.json")
    document = json.loads(attachment.get_content())
    assert (document["report_id"], document["source_identifier"]) == (report["report_id"], "198.51.100.7")
    assert document["evidence"][0]["payload"] == report["evidence"][0]["payload"]


def test_unowned_address_report_reaches_the_abuse_mailbox_through_smtp(rdap_server, bootstrap, http,
                                                                      smtp_server) -> None:
    port, mailbox = smtp_server(None)
    report = unowned_report()
    fallback = report_to_abuse_contact(report, http, sender="noc@example.org", reporter_name="Example NOC",
                                       smtp_host=LOOPBACK, smtp_port=port, bootstrap=bootstrap)
    assert fallback.destination == f"smtp://{LOOPBACK}:{port}"
    assert fallback.contact.email == "abuse@example.net"
    assert len(mailbox.messages) == 1
    assert_arf_carries(mailbox.messages[0], report)


def test_without_smtp_the_report_is_written_as_eml_for_the_person_to_send(rdap_server, bootstrap, http,
                                                                          tmp_path) -> None:
    report = unowned_report()
    fallback = report_to_abuse_contact(report, http, sender="noc@example.org", outbox_dir=tmp_path / "outbox",
                                       bootstrap=bootstrap)
    written = Path(fallback.destination)
    assert written.parent == tmp_path / "outbox" and written.suffix == ".eml"
    assert [p.name for p in written.parent.iterdir()] == [written.name]  # no temporary file left behind
    assert_arf_carries(written.read_bytes(), report)


def test_refused_recipient_is_an_error_quoting_the_server_and_the_report_is_kept_in_the_outbox(
        rdap_server, bootstrap, http, smtp_server, tmp_path) -> None:
    port, mailbox = smtp_server("550 5.1.1 mailbox unavailable")
    report = unowned_report()
    with pytest.raises(MailError) as refused:
        report_to_abuse_contact(report, http, sender="noc@example.org", smtp_host=LOOPBACK, smtp_port=port,
                                outbox_dir=tmp_path / "outbox", bootstrap=bootstrap)
    assert str(refused.value) == f"the mail server {LOOPBACK}:{port} refused the report (550 5.1.1 mailbox unavailable)"
    assert mailbox.messages == []
    assert [str(path) for path in (tmp_path / "outbox").iterdir()] == [refused.value.kept]
    assert_arf_carries(Path(refused.value.kept).read_bytes(), report)


def test_no_abuse_contact_sends_nothing(rdap_server, bootstrap, http, tmp_path) -> None:
    report = build_report(by_slug("port-scan"), "2001:db8:1000::1", REPORTER, OBSERVED)
    assert report_to_abuse_contact(report, http, sender="noc@example.org", outbox_dir=tmp_path,
                                   bootstrap=bootstrap) is None
    assert list(tmp_path.iterdir()) == []
