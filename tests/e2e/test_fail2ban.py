"""A real fail2ban bans an address for failed SSH logins and the shipped action reports it to the owner.

fail2ban (the Debian package, installed by `make test`) runs in the foreground with a private
configuration in tmp_path: Debian's sshd filter, the project's action, and a jail that watches a log
file this test writes. No firewall action: the ban only runs `report`. A recording RDAP server on loopback
stands in for the registries, so a fallback to RDAP would be seen and would stay on this host.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.test_fail2ban_action import running_fail2ban, text, wait_until

REPORT = Path(sys.executable).with_name("report")      # the virtualenv's command, as an operator would install it
ATTACKER = "127.0.1.23"                                # in the customer's 127.0.1.0/24
UNOWNED = "::1"                                        # no node holds it: the root answers "none"


@pytest.fixture
def reporter_dir(tree, tmp_path):
    folder = tmp_path / "reporter"
    env = {**os.environ, "NETIMMUNE_CONFIG_DIR": str(folder)}
    result = subprocess.run([str(REPORT), "init", "--root-url", tree.root.url, "--root-key", tree.anchor, "--dev",
                             "--org", "Example Hosting", "--contact", "abuse@example.net"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture
def rdap():
    from tests.integration.conftest import serve_http
    from tests.integration.test_rdap import RecordedRdap

    with serve_http(RecordedRdap) as server:
        server.requests = []
        server.url = f"http://127.0.0.1:{server.server_address[1]}/ripe/"
        yield server


@pytest.fixture
def fail2ban(tmp_path, reporter_dir, rdap):
    """fail2ban-server with an sshd jail on tmp_path/auth.log whose action reports through the real `report`;
    yields that log and fail2ban's own."""
    own_env = {name: value for name, value in os.environ.items() if not name.startswith("NETIMMUNE_")}
    own_env["NETIMMUNE_RDAP_URL"] = rdap.url
    action = f'netimmune[category=ssh-brute-force, report="{REPORT}", configdir="{reporter_dir}"]'
    with running_fail2ban(tmp_path, action, own_env) as (auth_log, own_log, _):
        yield auth_log, own_log


def test_fail2ban_ban_delivers_the_matched_lines_verbatim_to_the_owner(tree, reporter_dir, fail2ban, tmp_path):
    """Three failed logins get the address banned; the action reports it with the three lines as
    evidence, shell characters in them included, and runs none of them."""
    auth_log, own_log = fail2ban
    now = time.strftime("%b %d %H:%M:%S")
    lines = [f"{now} bastion sshd[4242]: Failed password for invalid user x$(touch {tmp_path}/ran)`id` "
             f"from {ATTACKER} port {50000 + n} ssh2" for n in range(3)]
    with auth_log.open("a") as log:
        log.write("".join(line + "\n" for line in lines))

    # the report command notes every delivery in the reporter's folder: watch that, not the node
    sent = reporter_dir / "sent.jsonl"
    wait_until(lambda: text(sent).endswith("\n"), 30, f"no report was sent; fail2ban's log:\n{text(own_log)}")
    assert json.loads(text(sent))["endpoint"] == tree.customer.url

    reader = tree.customer.token("reader")
    cases = httpx.get(f"{tree.customer.url}/v1/cases/{ATTACKER}", headers={"Authorization": f"Bearer {reader}"},
                      timeout=10).json()["cases"]
    assert [case["category"] for case in cases] == ["ssh-brute-force"]
    report = cases[0]["evidence_reports"][0]["report"]
    assert report["description"] == "fail2ban jail sshd: banned after 3 failures"
    assert base64.b64decode(report["evidence"][0]["payload"]).decode() == "".join(line + "\n" for line in lines)
    assert not (tmp_path / "ran").exists()


def test_fail2ban_ban_of_an_address_no_node_owns_is_done_without_mail_or_failure(reporter_dir, fail2ban, rdap):
    """The action passes --no-fallback and takes exit code 3 (nobody to tell) as done: no RDAP lookup, no .eml
    piling up in the outbox, no failed action in fail2ban's log."""
    auth_log, own_log = fail2ban
    now = time.strftime("%b %d %H:%M:%S")
    with auth_log.open("a") as log:
        log.write("".join(f"{now} bastion sshd[4242]: Failed password for root from {UNOWNED} port {50000 + n} ssh2\n"
                          for n in range(3)))

    wait_until(lambda: "-- returned" in text(own_log).partition(f"Ban {UNOWNED}")[2], 30,
               f"the action did not run; fail2ban's log:\n{text(own_log)}")
    after_ban = text(own_log).partition(f"Ban {UNOWNED}")[2]
    assert "-- returned successfully 0" in after_ban and "ERROR" not in after_ban, after_ban
    assert rdap.requests == []
    assert not (reporter_dir / "outbox").exists() and not (reporter_dir / "sent.jsonl").exists()
