"""`netimmune serve` as an operator starts it: the URL it names itself by, and what it refuses before it starts.

Nodes that serve are real `netimmune serve` processes on loopback; refusals that come before the node
listens are run in process.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from datetime import datetime, timezone

import httpx
import pytest
from click.testing import CliRunner

from chalicelib.cli.localnet import LocalNode, free_port
from chalicelib.cli.netimmune import main
from chalicelib.core.delegations import install
from chalicelib.protocol.categories import by_slug
from chalicelib.protocol.keys import KeyPair
from chalicelib.protocol.report import build_report, sign_envelope
from chalicelib.settings import Settings
from chalicelib.wiring import build_node
from tests.conftest import delegate

OPEN_PROXY_POLICY = """\
rules:
  - prefix: 127.0.0.0/16
    categories: [open-proxy]
    verify_at: 1
    alert_at: 100
    checks: [open-proxy]
    on_confirmed: [block: 1d]
    on_refuted: none
"""


def hold_space(db, root_key) -> None:
    """A node key beside db, and db holding 127.0.0.0/16 from root_key, as `delegate install` leaves it."""
    key = KeyPair.generate()
    key.save(db.with_suffix(".key"))
    install(build_node(Settings(db_path=db, trust_anchor=root_key.public, dev_mode=True)),
            [delegate(root_key, "127.0.0.0/16", key).document])


class NodeWithoutEndpoint(LocalNode):
    """Started as in the walkthrough that found the bug: --db, --port and --dev, but no --endpoint."""

    def options(self) -> list[str]:
        return ["--db", str(self.db), "--anchor", self.anchor, "--dev"]


def verdict_of(node: LocalNode, report: dict, timeout: float = 20.0) -> str:
    answer = httpx.post(f"{node.url}/v1/reports", json=report, timeout=5)
    assert answer.status_code == 202, answer.text
    report_id = report["report"]["report_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"{node.url}/v1/reports/{report_id}", timeout=5).json()["status"]
        if status in ("confirmed", "refuted", "inconclusive"):
            return status
        time.sleep(0.2)
    raise AssertionError(f"no verdict on {report_id} within {timeout:g} s")


@pytest.mark.parametrize("slash_ended", [False, True], ids=["derived", "slash-ended"])
def test_a_node_confirms_an_open_proxy_whether_its_endpoint_is_derived_or_ends_in_a_slash(
        tmp_path, root_key, pproxy, slash_ended):
    """The canary URL is the node's endpoint plus /v1/canary/…: on another port, or with `//`, the proxy fetches
    nothing and an honest reporter's true report is refuted."""
    (tmp_path / "policy.yaml").write_text(OPEN_PROXY_POLICY)
    port = free_port()
    endpoint = ("--endpoint", f"http://127.0.0.1:{port}/") if slash_ended else ()   # the last --endpoint wins
    node = (LocalNode if slash_ended else NodeWithoutEndpoint)(
        "child", tmp_path, anchor=root_key.public, port=port, env={"NETIMMUNE_PROXY_PORTS": str(pproxy("http"))},
        extra_args=("--policy", str(tmp_path / "policy.yaml"), *endpoint))
    hold_space(node.db, root_key)
    node.start()
    try:
        body = build_report(by_slug("open-proxy"), "127.0.0.1", {"org": "t"}, datetime.now(timezone.utc))
        assert verdict_of(node, sign_envelope(body, KeyPair.generate())) == "confirmed"
    finally:
        node.stop()


def serve(*args: str):
    """`netimmune serve` in process, for refusals that come before it listens. Where a missing refusal would let
    it listen (and the test hang), the test gives it no key file: it is refused all the same, for another reason."""
    return CliRunner().invoke(main, ["serve", "--dev", "--port", str(free_port()), *args], catch_exceptions=False)


@pytest.mark.parametrize("endpoint", ["notaurl", "ftp://127.0.0.1:8080", "http://127.0.0.1:8080/?node=1",
                                      "http://127.0.0.1:8080/#top", "http://admin:secret@127.0.0.1:8080"])
def test_a_malformed_endpoint_is_a_usage_error_naming_the_option(tmp_path, endpoint):
    result = serve("--db", str(tmp_path / "node.db"), "--endpoint", endpoint)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: --endpoint: endpoint {endpoint!r} ")


def test_a_malformed_endpoint_variable_is_a_usage_error_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("NETIMMUNE_ENDPOINT", "notaurl")
    result = serve("--db", str(tmp_path / "node.db"))
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: NETIMMUNE_ENDPOINT: endpoint 'notaurl' ")


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_a_wildcard_bind_without_endpoint_is_refused_before_anything_is_created(tmp_path, host):
    """Every address is no address others reach the node at; loopback would refute every remote proxy."""
    result = serve("--db", str(tmp_path / "node.db"), "--host", host)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: --host {host} listens on every address") and "--endpoint" in \
        result.output
    assert list(tmp_path.iterdir()) == []


def test_a_link_local_bind_without_endpoint_is_refused_naming_the_host_not_an_endpoint_never_given(tmp_path):
    result = serve("--db", str(tmp_path / "node.db"), "--host", "fe80::1%lo")
    assert result.exit_code == 2 and result.output.startswith("error: --host fe80::1%lo is an address on one link")
    assert list(tmp_path.iterdir()) == []


def test_help_says_where_the_endpoint_comes_from_when_it_is_not_given():
    runner = CliRunner()
    assert "default: http://HOST:PORT" in " ".join(runner.invoke(main, ["serve", "--help"]).output.split())
    assert "default: http://127.0.0.1:8080" in " ".join(runner.invoke(main, ["worker", "--help"]).output.split())


@pytest.mark.parametrize("command", [["serve", "--port", str(free_port())], ["worker", "--once"]])
def test_a_node_without_its_key_creates_no_database(tmp_path, command):
    """A mistyped --db names a key that is not there either: it must not leave a new node behind."""
    result = CliRunner().invoke(main, [*command, "--db", str(tmp_path / "nodir" / "x.db"), "--dev"],
                                catch_exceptions=False)
    assert result.exit_code == 1 and result.output.startswith(f"error: no key file at {tmp_path / 'nodir' / 'x.key'}")
    assert list(tmp_path.iterdir()) == []


def test_a_broken_policy_creates_no_database(tmp_path):
    KeyPair.generate().save(tmp_path / "node.key")
    (tmp_path / "policy.yaml").write_text("rules: [\n")
    result = serve("--db", str(tmp_path / "node.db"), "--policy", str(tmp_path / "policy.yaml"))
    assert result.exit_code == 1 and f"{tmp_path / 'policy.yaml'}:" in result.output
    assert not (tmp_path / "node.db").exists()


def test_a_port_in_use_creates_no_database(tmp_path):
    KeyPair.generate().save(tmp_path / "node.key")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = CliRunner().invoke(main, ["serve", "--db", str(tmp_path / "node.db"), "--dev", "--port",
                                           str(taken.getsockname()[1])], catch_exceptions=False)
    assert result.exit_code == 1 and "in use" in result.output
    assert not (tmp_path / "node.db").exists()


def test_a_node_holding_space_is_not_served_as_a_root_without_its_anchor(tmp_path, root_key):
    """Unanchored, it would tell /v1/node it is the root and judge reporters' credentials by its own key."""
    db = tmp_path / "child.db"
    hold_space(db, root_key)
    served = subprocess.run([sys.executable, "-m", "chalicelib.cli.netimmune", "serve", "--db", str(db), "--dev",
                             "--port", str(free_port())], capture_output=True, text=True, timeout=20)
    assert served.returncode == 1
    assert served.stderr.startswith(f"error: this node holds space under the root {root_key.public} but has no "
                                    "trust anchor") and f"--anchor {root_key.public}" in served.stderr


@pytest.mark.parametrize("command", [["serve", "--port", str(free_port())], ["worker", "--once"]])
@pytest.mark.parametrize("endpoint", [None, "http://10.0.0.7:8080"])   # never contacted: refused at start
def test_a_production_node_refuses_an_endpoint_the_hosts_it_checks_cannot_reach(tmp_path, monkeypatch, command,
                                                                                  endpoint):
    """The canary an open proxy must fetch is at the endpoint: loopback (the default) or private space there would
    refute every true open-proxy report. Nothing is created. (No key file: without the refusal, the command
    stops at once for want of a key instead of serving.)"""
    monkeypatch.delenv("NETIMMUNE_ENDPOINT", raising=False)
    monkeypatch.delenv("NETIMMUNE_DEV_MODE", raising=False)
    result = CliRunner().invoke(main, [*command, "--db", str(tmp_path / "node.db"),
                                       *(["--endpoint", endpoint] if endpoint else [])], catch_exceptions=False)
    assert result.exit_code == 2 and "special-purpose space" in result.output and "--endpoint" in result.output
    assert not (tmp_path / "node.db").exists()
