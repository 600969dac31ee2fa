"""`netimmune delegate grant` on a production node and on a dev one: what it refuses, with which exit code."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from chalicelib.cli.netimmune import main
from chalicelib.protocol.keys import KeyPair

CHILD, OTHER = KeyPair.generate().public, KeyPair.generate().public


@pytest.fixture
def netimmune(tmp_path, monkeypatch):
    """Run a command on the node in tmp_path (production mode unless --dev); returns (exit code, output)."""
    monkeypatch.setenv("NETIMMUNE_DB", str(tmp_path / "root.db"))
    monkeypatch.setenv("NETIMMUNE_KEY_FILE", str(tmp_path / "root.key"))
    runner = CliRunner()

    def invoke(*args):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        return result.exit_code, result.output

    assert invoke("keys", "new")[0] == 0
    assert invoke("worker", "--once", "--endpoint", "https://reports.example.net")[0] == 0   # never contacted
    return invoke


@pytest.mark.parametrize("endpoint", ["http://reports.example.net", "https://127.0.0.1"])
def test_a_production_grant_to_an_endpoint_reporters_refuse_fails_and_signs_nothing(netimmune, endpoint):
    code, output = netimmune("delegate", "grant", "8.8.8.0/24", "--holder", CHILD, "--to", endpoint)
    assert code == 1 and output.startswith(f"error: reporters refuse the endpoint {endpoint}: ")
    assert json.loads(netimmune("delegate", "list", "--json")[1])["granted"] == []


def test_a_production_grant_to_an_https_name_succeeds(netimmune):
    code, output = netimmune("delegate", "grant", "8.8.8.0/24", "--holder", CHILD, "--to",
                             "https://reports.example.net")
    assert code == 0 and json.loads(output)["delegation"]["delegation"]["endpoint"] == "https://reports.example.net"


def test_a_dev_grant_to_plain_http_on_loopback_succeeds(netimmune):
    assert netimmune("delegate", "grant", "127.0.1.0/24", "--holder", CHILD, "--to", "http://127.0.0.1:1",
                     "--dev")[0] == 0


def test_a_grant_that_takes_over_a_childs_space_fails_naming_the_child(netimmune):
    netimmune("delegate", "grant", "127.0.1.0/24", "--holder", CHILD, "--to", "http://127.0.0.1:1", "--dev")
    code, output = netimmune("delegate", "grant", "127.0.1.0/25", "--holder", OTHER, "--to", "http://127.0.0.1:1",
                             "--dev")
    assert code == 1
    assert output.strip() == (f"error: 127.0.1.0/25 lies inside 127.0.1.0/24, granted to {CHILD}; "
                              "revoke that first")
    listing = json.loads(netimmune("delegate", "list", "--json", "--dev")[1])["granted"]
    assert [(item["prefix"], item["holder"]) for item in listing] == [("127.0.1.0/24", CHILD)]
