"""`report` and its submitter against nodes that misbehave: a loopback server answers whatever a test sets,
so every odd answer (an HTTP-date Retry-After, an HTML page, a JSON list) is met for real over HTTP."""
from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from click.testing import CliRunner

from chalicelib.cli.report import init, send, status
from chalicelib.client.fetch import Fetcher, FetchError
from chalicelib.client.resolver import Failure, Resolution, ResolutionError, Resolver
from chalicelib.client.submitter import DeliveryError, Submitter
from chalicelib.protocol.categories import by_slug
from chalicelib.protocol.keys import KeyPair
from chalicelib.protocol.report import build_report, sign_envelope
from tests.integration.conftest import LOOPBACK, QuietHandler, serve_http

ROOT = KeyPair.generate()
ROOT_KEY = ROOT.public
LOCAL = Fetcher(allow_local=True)   # dev mode: the fake nodes are plain http on loopback
REPORT_ID = "0b7c1f4e-3a57-4c1e-9d55-6a1f2b3c4d5e"


class CannedNode(QuietHandler):
    """Answers every request with the server's `answer`: (status, headers, body bytes)."""

    def answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append(f"{self.command} {self.path}")
        status, headers, body = self.server.answer
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer


@contextlib.contextmanager
def canned_server() -> Iterator:
    """A loopback server that answers whatever `server.set(status, body, **headers)` last decided; `server.url` is
    its base, `server.requests` lists what it was asked."""
    with serve_http(CannedNode) as server:
        server.url = f"http://{LOOPBACK}:{server.server_address[1]}"
        server.requests = []

        def set_answer(status: int, body, **headers: str) -> None:
            if not isinstance(body, bytes):
                body, headers = json.dumps(body).encode(), {"Content-Type": "application/json", **headers}
            server.answer = (status, {k.replace("_", "-"): v for k, v in headers.items()}, body)

        server.set = set_answer
        server.set(500, {})
        yield server


@pytest.fixture
def node() -> Iterator:
    """A fake node (see canned_server)."""
    with canned_server() as server:
        yield server


@pytest.fixture
def rdap() -> Iterator:
    """A fake RDAP server that lists abuse@example.net as the abuse contact of any network it is asked about;
    `rdap.network(name)` names that network."""
    with canned_server() as server:
        def network(name: str) -> None:
            server.set(200, {"objectClassName": "ip network", "name": name, "startAddress": "198.51.100.0",
                             "endAddress": "198.51.100.255", "entities": [
                                 {"roles": ["abuse"], "handle": "ABUSE1", "vcardArray": [
                                     "vcard", [["version", {}, "text", "4.0"],
                                               ["email", {}, "text", "abuse@example.net"]]]}]})

        server.network = network
        network("EXAMPLE-NET")
        yield server


def envelope() -> dict:
    report = build_report(by_slug("spam"), "127.0.0.5", {}, datetime.now(timezone.utc))
    return sign_envelope(report, KeyPair.generate())


def deliver(node) -> Submitter:
    """Send one report straight to the fake node, as if the tree had named it the owner."""
    submitter = Submitter(Resolver(node.url, ROOT_KEY, LOCAL))
    owner = Resolution("127.0.0.5", "authoritative", (node.url,), node.url, "127.0.0.0/8")
    return submitter.deliver(envelope(), resolution=owner)


def http_date_in(seconds: int) -> str:
    return format_datetime(datetime.now(timezone.utc) + timedelta(seconds=seconds), usegmt=True)


def test_retry_after_as_an_http_date_is_read_as_seconds(node):
    node.set(429, {"error": {"code": "rate_limited", "message": "slow down"}}, Retry_After=http_date_in(120))
    with pytest.raises(DeliveryError) as refused:
        deliver(node)
    assert refused.value.kind == "rate_limited" and 115 <= refused.value.retry_after <= 120
    assert f"slow down for {refused.value.retry_after} s" in refused.value.message


def test_retry_after_as_an_http_date_is_read_for_a_batch(node):
    node.set(429, {"error": {"code": "rate_limited", "message": "slow down"}}, Retry_After=http_date_in(30))
    with pytest.raises(DeliveryError) as refused:
        Submitter(Resolver(node.url, ROOT_KEY, LOCAL)).deliver_batch(node.url, [envelope()])
    assert refused.value.kind == "rate_limited" and 25 <= refused.value.retry_after <= 30


def test_retry_after_that_is_neither_seconds_nor_a_date_falls_back_to_a_minute(node):
    node.set(429, {"error": {"code": "rate_limited", "message": "slow down"}}, Retry_After="soon")
    with pytest.raises(DeliveryError) as refused:
        deliver(node)
    assert refused.value.retry_after == 60 and "slow down for 60 s" in refused.value.message


@pytest.mark.parametrize("status,body", [(202, b"accepted"), (200, b"<html>ok</html>"), (202, [1, 2]),
                                         (202, b"[" * 100_000)])
def test_an_acceptance_that_is_not_a_json_object_is_a_clear_refusal(node, status, body):
    node.set(status, body)
    with pytest.raises(DeliveryError) as refused:
        deliver(node)
    assert refused.value.kind == "rejected" and "not with a JSON object" in refused.value.message


def test_a_misdirected_answer_that_is_a_json_list_is_a_clear_refusal(node):
    node.set(421, ["not", "a", "referral"])
    with pytest.raises(DeliveryError) as refused:
        deliver(node)
    assert refused.value.kind == "resolution" and node.url in refused.value.message


@pytest.mark.parametrize("body", [b"ok", {"results": "all fine"}, {"results": [{"status": 202}]}, [1]])
def test_a_batch_answer_without_one_result_per_report_is_a_clear_refusal(node, body):
    node.set(200, body)
    with pytest.raises(DeliveryError) as refused:
        Submitter(Resolver(node.url, ROOT_KEY, LOCAL)).deliver_batch(node.url, [envelope(), envelope()])
    assert refused.value.kind == "rejected" and "one result per report" in refused.value.message


def test_an_html_error_page_is_named_not_printed(node):
    node.set(502, b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
             Content_Type="text/html")
    with pytest.raises(DeliveryError) as refused:
        deliver(node)
    assert "an HTML page (Bad Gateway)" in refused.value.message and "<html>" not in refused.value.message


@pytest.fixture
def report_cli(tmp_path, monkeypatch):
    """`report` in process with a configuration folder of its own, in dev mode; returns the click result."""
    monkeypatch.setenv("NETIMMUNE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("NETIMMUNE_DEV_MODE", "1")
    runner = CliRunner()

    def invoke(command, *args):
        return runner.invoke(command, list(args), catch_exceptions=False)

    return invoke


def test_report_status_prints_the_nodes_error_message_not_its_body(node, report_cli):
    node.set(404, {"error": {"code": "not_found", "message": f"no report {REPORT_ID} here"}})
    result = report_cli(status, REPORT_ID, "--endpoint", node.url)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {node.url} answered 404: no report {REPORT_ID} here"


def test_report_status_json_error_is_json_on_stdout(node, report_cli):
    node.set(404, {"error": {"code": "not_found", "message": f"no report {REPORT_ID} here"}})
    result = report_cli(status, REPORT_ID, "--endpoint", node.url + "/", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"error": {"code": "not_found", "message": f"{node.url} answered 404: "
                                                   f"no report {REPORT_ID} here"}, "status": 404}


@pytest.mark.parametrize("body", [b"fine", {"report_id": REPORT_ID, "status": "received"}, ["received"]])
def test_report_status_refuses_an_answer_that_is_not_a_report_status(node, report_cli, body):
    node.set(200, body)
    result = report_cli(status, REPORT_ID, "--endpoint", node.url)
    assert result.exit_code == 1 and "answered without the report's status" in result.stderr


def test_report_status_refuses_an_id_that_is_not_a_uuid(report_cli):
    result = report_cli(status, "../node", "--endpoint", "http://127.0.0.1:9")
    assert result.exit_code == 2 and "'../node' is not a report id" in result.stderr


def test_report_status_endpoint_may_end_in_a_slash(node, report_cli):
    answer = {"report_id": REPORT_ID, "ip": "127.0.0.5", "category": "spam", "status": "received"}
    node.set(200, answer)
    result = report_cli(status, REPORT_ID, "--endpoint", node.url + "/")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{REPORT_ID}: 127.0.0.5 (spam) is received at {node.url}"


def test_report_status_skips_a_damaged_line_of_the_sent_log(node, report_cli, tmp_path):
    log = tmp_path / "config" / "sent.jsonl"
    log.parent.mkdir()
    log.write_text(json.dumps({"report_id": REPORT_ID, "ip": "127.0.0.5", "endpoint": node.url}) + "\n{\"report_\n")
    node.set(200, {"report_id": REPORT_ID, "ip": "127.0.0.5", "category": "spam", "status": "verifying"})
    result = report_cli(status, REPORT_ID)
    assert result.exit_code == 0, result.output
    assert "is verifying" in result.stdout


def test_init_refuses_a_bad_smtp_port_before_writing_anything(report_cli, tmp_path):
    result = report_cli(init, "--root-url", "http://127.0.0.1:9", "--root-key", ROOT_KEY, "--dev", "--smtp", "mail:abc")
    assert result.exit_code == 2 and "--smtp: 'mail:abc' is not HOST[:PORT]" in result.stderr
    assert not (tmp_path / "config").exists()


def test_init_refuses_a_root_url_that_is_not_a_url(report_cli, tmp_path):
    result = report_cli(init, "--root-url", "not a url", "--root-key", ROOT_KEY)
    assert result.exit_code == 2 and "--root-url: 'not a url' is not an http(s) URL" in result.stderr
    assert not (tmp_path / "config").exists()


def test_init_keeps_the_smtp_host_and_port(report_cli, tmp_path):
    result = report_cli(init, "--root-url", "http://127.0.0.1:9/", "--root-key", ROOT_KEY, "--dev",
                        "--smtp", "[::1]:2525")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "config" / "report.json").read_text())
    assert (config["root_url"], config["smtp_host"], config["smtp_port"]) == ("http://127.0.0.1:9", "::1", 2525)


@pytest.mark.parametrize("field,value", [("root_url", None), ("root_key", "ed25519:nope"), ("smtp_port", "25"),
                                         ("reporter", "Example CERT")])
def test_a_malformed_configuration_is_refused_when_loaded(report_cli, tmp_path, field, value):
    assert report_cli(init, "--root-url", "http://127.0.0.1:9", "--root-key", ROOT_KEY, "--dev").exit_code == 0
    path = tmp_path / "config" / "report.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), field: value}))
    result = report_cli(send, "--spam", "127.0.0.5")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {path} is not a reporter configuration: ") and field in result.stderr


def test_a_malformed_root_key_override_is_named_as_such(report_cli):
    assert report_cli(init, "--root-url", "http://127.0.0.1:9", "--root-key", ROOT_KEY, "--dev").exit_code == 0
    result = report_cli(send, "--spam", "127.0.0.5", "--root-key", "garbage")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --root-key (or NETIMMUNE_ROOT_KEY): public key must start with")


def test_two_category_flags_are_a_usage_error(report_cli):
    result = report_cli(send, "--open-proxy", "--spam", "127.0.0.5")
    assert result.exit_code == 2 and "one category per report, not --open-proxy and --spam" in result.stderr


@pytest.mark.parametrize("args,code", [
    (["--spam", "127.0.0.999"], "bad_ip"),
    (["--spam", "127.0.0.5", "--time", "yesterday"], "bad_time"),
    (["127.0.0.5"], "usage"),
])
def test_json_errors_are_json_on_stdout_with_the_same_exit_code(report_cli, args, code):
    """Mistakes in the command line exit 2, like click's own."""
    assert report_cli(init, "--root-url", "http://127.0.0.1:9", "--root-key", ROOT_KEY, "--dev").exit_code == 0
    result = report_cli(send, *args, "--json")
    assert result.exit_code == 2 and result.stderr.startswith("error: ")
    assert json.loads(result.stdout)["error"]["code"] == code


def test_json_error_for_a_missing_configuration(report_cli):
    result = report_cli(send, "--spam", "127.0.0.5", "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "config" and "no reporter configuration" in error["message"]


def test_a_plain_http_root_is_refused_outside_dev_mode_and_never_asked(node, report_cli, monkeypatch):
    monkeypatch.delenv("NETIMMUNE_DEV_MODE")
    result = report_cli(send, "--dry-run", "--json", "127.0.0.5", "--root-url", node.url, "--root-key", ROOT_KEY)
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "resolution"
    assert f"refused endpoint {node.url}/v1/refer/127.0.0.5: it is not https" in error["message"]
    assert "NETIMMUNE_DEV_MODE=1" in error["message"] and node.requests == []


def test_a_host_name_that_resolves_to_loopback_is_refused_outside_dev_mode(node):
    """The name is resolved and every address checked before anything is sent (localhost is in /etc/hosts)."""
    url = node.url.replace(LOOPBACK, "localhost")
    with pytest.raises(FetchError) as refused:
        Fetcher().get(url.replace("http:", "https:"))
    assert refused.value.kind == FetchError.UNSAFE_ENDPOINT
    assert "localhost resolves to 127.0.0.1, which is special-purpose space (loopback)" in refused.value.message
    assert node.requests == []
    node.set(200, {"fine": True})
    assert LOCAL.get(url).json() == {"fine": True}       # dev mode connects to the checked address, by name
    assert node.requests == ["GET /"]


def test_delivery_to_an_owner_outside_dev_mode_is_refused_and_sends_nothing(node):
    owner = Resolution("127.0.0.5", "authoritative", (node.url,), node.url, "127.0.0.0/8")
    with pytest.raises(DeliveryError) as refused:
        Submitter(Resolver(node.url, ROOT_KEY)).deliver(envelope(), resolution=owner)
    assert refused.value.kind == "unsafe_endpoint" and node.url in refused.value.message
    assert node.requests == []


def test_init_refuses_a_plain_http_root_outside_dev_mode(report_cli, tmp_path):
    result = report_cli(init, "--root-url", "http://127.0.0.1:9", "--root-key", ROOT_KEY)
    assert result.exit_code == 2
    assert "--root-url: refused endpoint http://127.0.0.1:9: it is not https" in result.stderr
    assert not (tmp_path / "config").exists()


def test_init_dev_is_kept_and_used_without_the_variable(node, report_cli, tmp_path, monkeypatch):
    assert report_cli(init, "--root-url", node.url, "--root-key", ROOT_KEY, "--dev").exit_code == 0
    assert json.loads((tmp_path / "config" / "report.json").read_text())["dev_mode"] is True
    monkeypatch.delenv("NETIMMUNE_DEV_MODE")
    node.set(404, {"answer": "none", "ttl": 60})
    result = report_cli(send, "--dry-run", "--json", "127.0.0.5")
    assert result.exit_code == 3 and json.loads(result.stdout)["resolution"]["answer"] == "none"


def test_an_answer_larger_than_the_cap_is_refused_without_reading_it_all(node, report_cli):
    node.set(200, b'{"answer": "none", "pad": "' + b"x" * (20 * 1024 * 1024) + b'"}',
             Content_Type="application/json")
    result = report_cli(send, "--dry-run", "--json", "127.0.0.5", "--root-url", node.url, "--root-key", ROOT_KEY)
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "resolution" and "answered with more than 2097152 bytes" in error["message"]


def test_json_nested_too_deep_is_a_clear_error_and_json_with_json(node, report_cli):
    node.set(200, b"[" * 100_000, Content_Type="application/json")
    result = report_cli(send, "--dry-run", "--json", "127.0.0.5", "--root-url", node.url, "--root-key", ROOT_KEY)
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "resolution" and f"{node.url} answered HTTP 200 without a referral" in error["message"]


class TricklingNode(QuietHandler):
    """Answers a byte every 0.2 s: each read is quick, the whole answer takes 8 s."""

    def do_GET(self) -> None:
        body = b'{"answer": "none"}' + b" " * 22
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for byte in body:
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.2)


class SlowNode(QuietHandler):
    """Says nothing for 3 s, then answers at once."""

    def do_GET(self) -> None:
        time.sleep(3)
        body = b'{"answer": "none"}'
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up long ago
            pass


def test_a_node_answering_a_byte_at_a_time_is_given_up_at_the_deadline():
    with serve_http(TricklingNode) as server:
        resolver = Resolver(f"http://{LOOPBACK}:{server.server_address[1]}", ROOT_KEY,
                            Fetcher(allow_local=True, timeout=1.0))
        started = time.monotonic()
        with pytest.raises(ResolutionError) as refused:
            resolver.resolve("127.0.0.5")
    assert time.monotonic() - started < 2
    assert refused.value.failure is Failure.UNREACHABLE and "did not answer within 1 s" in refused.value.message


def test_a_resolution_has_one_deadline_whatever_each_request_may_take():
    with serve_http(SlowNode) as server:
        resolver = Resolver(f"http://{LOOPBACK}:{server.server_address[1]}", ROOT_KEY, LOCAL, resolution_timeout=1.0)
        started = time.monotonic()
        with pytest.raises(ResolutionError) as refused:
            resolver.resolve("127.0.0.5")
    assert time.monotonic() - started < 2
    assert refused.value.failure is Failure.UNREACHABLE


def init_reporter(report_cli, *args):
    """`report init` against a root nobody asks (the tests below fail before sending, or use --root-url)."""
    result = report_cli(init, "--root-url", "http://127.0.0.1:9", "--root-key", ROOT_KEY, "--dev", *args)
    assert result.exit_code == 0, result.output
    return result


def test_evidence_over_the_limit_names_the_limit_not_the_bytes_read(report_cli):
    """stdin is read only up to one byte past the limit, so the size read is not the evidence's size."""
    init_reporter(report_cli)
    result = CliRunner().invoke(send, ["--spam", "127.0.0.5"], input=b"x" * 300_000, catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: evidence exceeds the limit of 262,144 bytes (256 KiB) a report may "
                                     "carry: pass the relevant lines only")


def test_an_endless_evidence_file_is_refused_after_reading_past_the_limit_not_loaded(report_cli, tmp_path):
    """/dev/zero never ends: read whole, it would fill the memory (capped here at 512 MiB so the old way fails
    fast); read only one byte past the limit, it is refused at once."""
    import resource
    import subprocess
    import sys

    init_reporter(report_cli)

    def cap_memory():
        resource.setrlimit(resource.RLIMIT_AS, (512 * 2**20, 512 * 2**20))

    result = subprocess.run([sys.executable, "-m", "chalicelib.cli.report", "--spam", "127.0.0.5", "--evidence",
                             "/dev/zero"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                            preexec_fn=cap_memory)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: evidence exceeds the limit of 262,144 bytes")


def test_a_comment_over_the_limit_is_refused_naming_comment_before_anything_is_sent(node, report_cli):
    init_reporter(report_cli)
    result = report_cli(send, "--spam", "127.0.0.5", "--comment", "x" * 4097, "--json", "--root-url", node.url)
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --comment has 4,097 characters; a report's comment may have at most 4,096"
    assert json.loads(result.stdout)["error"]["code"] == "comment_too_long"
    assert node.requests == []


def test_dry_run_json_without_an_owner_is_a_refusal_like_the_others(node, report_cli):
    """Exit 3, `error: …` on stderr and the error object on stdout, with what the tree answered beside it."""
    node.set(404, {"answer": "none", "ttl": 60})
    result = report_cli(send, "--dry-run", "--json", "127.0.0.5", "--root-url", node.url, "--root-key", ROOT_KEY)
    assert result.exit_code == 3
    refusal = json.loads(result.stdout)
    assert refusal["error"]["code"] == "no_owner"
    assert result.stderr.strip() == f"error: {refusal['error']['message']}"
    assert refusal["resolution"]["answer"] == "none" and refusal["resolution"]["hops"] == [node.url]
    assert set(refusal) == {"error", "resolution"}


class Owner(QuietHandler):
    """The owner of 127.0.0.0/8 as the tree names it: answers every referral query with the server's `referral`,
    every report with its `answer` (status, headers, body) and every status query as the node that keeps it."""

    def do_GET(self) -> None:
        if self.path.startswith("/v1/reports/"):
            report_id = self.path.rpartition("/")[2]
            self.reply(200, {}, {"report_id": report_id, "ip": "127.0.0.5", "category": "spam", "status": "received"})
        else:
            self.reply(200, {}, self.server.referral)

    def do_POST(self) -> None:
        self.server.reports.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0))))
        self.reply(*self.server.answer)

    def reply(self, status: int, headers: dict, body) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def owner() -> Iterator:
    """A node the root (itself) names the owner of 127.0.0.0/8; it accepts every report unless a test sets
    `owner.answer`, and `owner.reports` lists the envelopes it was sent."""
    from tests.conftest import delegate

    with serve_http(Owner) as server:
        server.url = f"http://{LOOPBACK}:{server.server_address[1]}"
        server.referral = {"answer": "authoritative", "ttl": 60,
                           "chain": [delegate(ROOT, "127.0.0.0/8", KeyPair.generate(), endpoint=server.url).document]}
        server.answer = (202, {}, {"status": "received", "rank": "anonymous"})
        server.reports = []
        yield server


@pytest.mark.parametrize("status,headers,beside", [
    (429, {"Retry-After": "5"}, {"status": 429, "retry_after": 5}),
    (422, {}, {"status": 422}),
])
def test_a_nodes_refusal_has_status_and_retry_after_beside_the_error(owner, report_cli, status, headers, beside):
    init_reporter(report_cli)
    owner.answer = (status, headers, {"error": {"code": "slow_down" if status == 429 else "nope", "message": "no"}})
    result = report_cli(send, "--spam", "127.0.0.5", "--json", "--root-url", owner.url)
    assert result.exit_code == 1
    refusal = json.loads(result.stdout)
    assert {key: value for key, value in refusal.items() if key != "error"} == beside
    assert refusal["error"]["code"] == ("rate_limited" if status == 429 else "rejected")


def endorsed(reporter: str, rank: str = "noc") -> list:
    """Credentials as `netimmune endorse` writes them: an ISP's chain from ROOT and its endorsement of reporter."""
    from chalicelib.protocol.endorsement import issue_endorsement
    from tests.conftest import delegate

    isp = KeyPair.generate()
    chain = [delegate(ROOT, "127.0.0.0/8", isp).document]
    return [*chain, issue_endorsement(isp, reporter, "Example NOC", rank,
                                      datetime.now(timezone.utc) + timedelta(days=30))]


@pytest.mark.parametrize("content", [
    b"1732600000.123 200 127.0.1.9 TCP_TUNNEL/200 4521 CONNECT mail.example.org:25 - HIER_DIRECT\n",
    b'{"x": 1}', b"[]", b"[1, 2]", b'{"credentials": "noc"}', b"\xff\xfe", json.dumps([{}] * 11).encode(),
], ids=["squid-log", "object", "empty", "numbers", "not-a-list", "not-utf8", "too-many"])
def test_init_refuses_a_credentials_file_that_is_not_credentials(report_cli, tmp_path, content):
    path = tmp_path / "credentials.json"
    path.write_bytes(content)
    result = report_cli(init, "--root-url", "http://127.0.0.1:9", "--root-key", ROOT_KEY, "--dev",
                        "--credentials", str(path))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: --credentials: {path} is not a credentials file")
    assert not (tmp_path / "config").exists()


def test_init_refuses_credentials_for_the_key_it_is_about_to_make(report_cli, tmp_path):
    """An endorsement names the key it endorses, which a first `report init` has yet to make."""
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"credentials": endorsed(KeyPair.generate().public)}))
    result = report_cli(init, "--root-url", "http://127.0.0.1:9", "--root-key", ROOT_KEY, "--dev",
                        "--credentials", str(path))
    assert result.exit_code == 2 and "report credentials FILE" in result.stderr
    assert not (tmp_path / "config").exists()


def test_init_keeps_credentials_that_give_its_existing_key_a_rank(report_cli, tmp_path):
    key = KeyPair.generate()
    (tmp_path / "config").mkdir()
    key.save(tmp_path / "config" / "reporter.key")
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"credentials": endorsed(key.public)}))
    result = init_reporter(report_cli, "--credentials", str(path))
    assert "rank noc (Example NOC)" in result.stdout
    assert json.loads((tmp_path / "config" / "report.json").read_text())["credentials_file"] == str(path)


def test_report_credentials_attaches_a_file_to_the_configured_key(report_cli, tmp_path):
    from chalicelib.cli.report import use_credentials
    from chalicelib.client.config import ReporterConfig

    init_reporter(report_cli)
    config_path = tmp_path / "config" / "report.json"
    key = KeyPair.load(tmp_path / "config" / "reporter.key")
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps(endorsed(key.public, "trusted")))     # a bare list is credentials too
    result = report_cli(use_credentials, str(path))
    assert result.exit_code == 0, result.output
    assert "rank trusted (Example NOC)" in result.stdout
    assert ReporterConfig.load(config_path).credentials() == json.loads(path.read_text())


def test_report_credentials_refuses_credentials_that_do_not_verify(report_cli, tmp_path):
    from chalicelib.cli.report import use_credentials

    init_reporter(report_cli)
    config_path = tmp_path / "config" / "report.json"
    before = config_path.read_text()
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps(endorsed(KeyPair.generate().public)))
    result = report_cli(use_credentials, str(path))
    assert result.exit_code == 2
    assert result.stderr.strip().endswith("the endorsement names another reporter key")
    assert config_path.read_text() == before


def test_a_credentials_file_damaged_after_init_is_refused_before_sending(node, report_cli, tmp_path):
    key = KeyPair.generate()
    (tmp_path / "config").mkdir()
    key.save(tmp_path / "config" / "reporter.key")
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps(endorsed(key.public)))
    init_reporter(report_cli, "--credentials", str(path))
    path.write_text('{"x": 1}')
    result = report_cli(send, "--spam", "127.0.0.5", "--json", "--root-url", node.url)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == "config"
    assert f"{path} is not a credentials file" in result.stderr
    assert node.requests == []


UNOWNED = "198.51.100.7"     # no node holds it: the tests' root answers "none" and the fake RDAP server is asked


def report_unowned(report_cli, node, rdap, *args):
    """A report for an address the tree names no owner of, so `report` falls back to RDAP."""
    node.set(404, {"answer": "none", "ttl": 60})
    return report_cli(send, "--spam", UNOWNED, "--root-url", node.url, "--rdap-url", rdap.url, *args)


def test_a_delivered_report_whose_sent_log_cannot_be_written_exits_0_with_a_warning(owner, report_cli, tmp_path):
    """The node has the report: the local note for `report status` failing is a warning, not a failure."""
    init_reporter(report_cli)
    log = tmp_path / "config" / "sent.jsonl"
    log.mkdir()                                  # cannot be appended to, even by root
    result = report_cli(send, "--spam", "127.0.0.5", "--root-url", owner.url)
    assert result.exit_code == 0, result.output
    assert len(owner.reports) == 1 and result.stdout.startswith(f"reported 127.0.0.5 (spam) to {owner.url}")
    report_id = owner.reports[0]["report"]["report_id"]
    assert result.stderr.startswith(f"warning: the report was delivered, but noting it in {log} failed")
    assert f"`report status {report_id}` will need --endpoint {owner.url}" in result.stderr


def test_sent_log_follows_the_configuration_given_with_config_and_report_status_finds_it(owner, report_cli, tmp_path,
                                                                                         monkeypatch):
    elsewhere = tmp_path / "elsewhere" / "report.json"
    init_reporter(report_cli, "--config", str(elsewhere))
    monkeypatch.setenv("NETIMMUNE_CONFIG_DIR", str(tmp_path / "unused"))
    result = report_cli(send, "--spam", "127.0.0.5", "--root-url", owner.url, "--config", str(elsewhere))
    assert result.exit_code == 0 and result.stderr == "", result.output
    report_id = owner.reports[0]["report"]["report_id"]
    assert json.loads((elsewhere.parent / "sent.jsonl").read_text())["report_id"] == report_id
    result = report_cli(status, report_id, "--config", str(elsewhere))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{report_id}: 127.0.0.5 (spam) is received at {owner.url}"
    assert not (tmp_path / "unused").exists() and not (tmp_path / "config").exists()


def test_the_rdap_outbox_follows_the_configuration_given_with_config(node, rdap, report_cli, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere" / "report.json"
    init_reporter(report_cli, "--config", str(elsewhere))
    monkeypatch.setenv("NETIMMUNE_CONFIG_DIR", str(tmp_path / "unused"))
    result = report_unowned(report_cli, node, rdap, "--config", str(elsewhere))
    assert result.exit_code == 0, result.output
    written = list((elsewhere.parent / "outbox").glob("*.eml"))
    assert len(written) == 1 and f"to {written[0]} — send it to abuse@example.net" in result.stdout
    assert not (tmp_path / "unused").exists()


def test_a_mail_server_that_cannot_be_reached_is_named_and_the_report_kept_in_the_outbox(node, rdap, report_cli,
                                                                                         tmp_path, closed_port):
    """RDAP answered: the failure is the mail server's, and the mail waits in the outbox instead of being lost."""
    init_reporter(report_cli, "--smtp", f"{LOOPBACK}:{closed_port}")
    result = report_unowned(report_cli, node, rdap, "--json")
    assert result.exit_code == 1
    written = list((tmp_path / "config" / "outbox").glob("*.eml"))
    assert len(written) == 1 and b"abuse@example.net" in written[0].read_bytes()
    refusal = json.loads(result.stdout)
    assert refusal["error"]["code"] == "smtp_failed" and refusal["destination"] == str(written[0])
    message = refusal["error"]["message"]
    assert result.stderr.strip() == f"error: {message}"
    assert f"the mail server {LOOPBACK}:{closed_port} could not be reached (" in message
    assert f"the X-ARF report for abuse@example.net is kept in {written[0]}" in message
    assert "registry" not in message and "RDAP" not in message


@pytest.mark.parametrize("args", [
    ["--root-url", "https://[::1"],
    ["--root-url", "https://root.example:99999"],
    ["--root-url", "https://root.example:0"],
    ["--root-url", "https://root.example", "--smtp", "mail.example:0"],
    ["--root-url", "https://root.example", "--smtp", "mail.example:65536"],
    ["--root-url", "https://root.example", "--smtp", "[::1"],
], ids=["unclosed-ipv6", "port-too-high", "port-0", "smtp-port-0", "smtp-port-too-high", "smtp-unclosed-ipv6"])
def test_init_refuses_a_url_or_mail_server_nothing_could_connect_to(report_cli, tmp_path, args):
    result = report_cli(init, *args, "--root-key", ROOT_KEY)
    option, value = args[-2:]
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {option}: {value!r} is not ")
    assert "a port from 1 to 65535" in result.stderr
    assert not (tmp_path / "config").exists()


def test_an_unclosed_ipv6_root_url_override_is_a_usage_error():
    result = CliRunner().invoke(send, ["--dry-run", "127.0.0.5", "--root-url", "https://[::1", "--root-key", ROOT_KEY],
                                catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --root-url (or NETIMMUNE_ROOT_URL): 'https://[::1' is not an http(s) URL")


def test_an_unclosed_ipv6_status_endpoint_is_a_usage_error(report_cli):
    result = report_cli(status, REPORT_ID, "--endpoint", "http://[::1")
    assert result.exit_code == 2 and result.stderr.startswith("error: --endpoint: 'http://[::1' is not an http(s) URL")


INJECTED = "\r\nX-Injected: yes\x1b[2J"


def test_an_rdap_network_name_with_control_characters_is_printed_escaped(node, rdap, report_cli):
    init_reporter(report_cli)
    rdap.network("EXAMPLE-NET" + INJECTED)
    result = report_unowned(report_cli, node, rdap)
    assert result.exit_code == 0, result.output
    assert "abuse contact (RDAP): abuse@example.net — EXAMPLE-NET\\r\\nX-Injected: yes\\x1b[2J" in result.stdout
    assert not any(line.startswith("X-Injected") for line in result.stdout.splitlines())
    assert "\x1b" not in result.stdout and "\r" not in result.stdout


@pytest.mark.parametrize("body", [{"error": {"code": "nope", "message": "no" + INJECTED}}, ("no" + INJECTED).encode()],
                         ids=["json-message", "plain-text"])
def test_a_nodes_refusal_with_control_characters_is_printed_escaped(owner, report_cli, body):
    init_reporter(report_cli)
    owner.answer = (422, {} if isinstance(body, dict) else {"Content-Type": "text/plain"}, body)
    result = report_cli(send, "--spam", "127.0.0.5", "--root-url", owner.url)
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1 and "\x1b" not in result.stderr
    assert result.stderr.rstrip("\n").endswith("no\\r\\nX-Injected: yes\\x1b[2J")


def test_report_status_prints_a_nodes_error_body_escaped(node, report_cli):
    node.set(404, ("gone" + INJECTED).encode(), Content_Type="text/plain")
    result = report_cli(status, REPORT_ID, "--endpoint", node.url)
    assert result.exit_code == 1
    assert result.stderr == f"error: {node.url} answered 404: gone\\r\\nX-Injected: yes\\x1b[2J\n"


def help_text() -> str:
    return " ".join(CliRunner().invoke(send, ["--help"], terminal_width=200).stdout.split())


def test_help_says_which_errors_are_json_and_click_usage_errors_print_none(report_cli):
    assert "With --json, a refusal (exit 1 or 3) is JSON on stdout too" in help_text()
    assert ("a mistake click finds while reading the options (an unknown option, a bad --port) is only the "
            "message on stderr") in help_text()
    result = report_cli(send, "--spam", "127.0.0.5", "--port", "99999", "--json")
    assert result.exit_code == 2 and result.stdout == ""


def test_help_tells_how_to_keep_a_loops_stdin_out_of_the_evidence():
    assert "stdin whenever it is not a terminal" in help_text()
    assert 'while read ip; do report --port-scan "$ip" < /dev/null; done < ips.txt' in help_text()
