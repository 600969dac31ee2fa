"""The shipped fail2ban action run by a real fail2ban, with a stand-in for `report` that records each call.

fail2ban (the Debian package, installed by `make test`) runs in the foreground with a private configuration in
tmp_path: Debian's sshd filter, the project's action, and a jail on a log file the test writes. What reaches the
owner's node is tests/e2e/test_fail2ban.py's business; here it is only whether, and with what, the action runs
`report`.
"""
from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ACTION = Path(__file__).parents[2] / "contrib" / "fail2ban" / "action.d" / "netimmune.conf"
DEBIAN_FILTERS = Path("/etc/fail2ban/filter.d")
ATTACKER = "127.0.1.81"


def wait_until(condition, timeout: float, failure: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{failure} (waited {timeout} s)")


def text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@contextlib.contextmanager
def running_fail2ban(folder: Path, action: str, env: dict[str, str]) -> Iterator[tuple[Path, Path, Path]]:
    """fail2ban-server with one sshd jail on folder/auth.log and `action` (the jail's `action =` line); yields that
    log, fail2ban's own log (at DEBUG: each action's exit code and output) and the socket fail2ban-client needs."""
    server = shutil.which("fail2ban-server")
    assert server, "fail2ban is not installed: run `make debian` (Debian package fail2ban)"
    conf, auth_log, own_log, socket = folder / "fail2ban", folder / "auth.log", folder / "fail2ban.log", \
        folder / "fail2ban.sock"
    (conf / "filter.d").mkdir(parents=True)
    (conf / "action.d").mkdir()
    for name in ("sshd.conf", "common.conf"):
        shutil.copy(DEBIAN_FILTERS / name, conf / "filter.d")
    shutil.copy(ACTION, conf / "action.d")
    auth_log.touch()
    (conf / "fail2ban.conf").write_text(f"[Definition]\nloglevel = DEBUG\nlogtarget = {own_log}\ndbfile = :memory:\n")
    # loopback is fail2ban's own address: without ignoreself and ignoreip it would never ban the attacker
    (conf / "jail.local").write_text(f"""[DEFAULT]
ignoreself = false
ignoreip =
backend = polling

[sshd]
enabled = true
filter = sshd
logpath = {auth_log}
maxretry = 3
action = {action}
""")
    process = subprocess.Popen([server, "-f", "-x", "-c", str(conf), "-s", str(socket), "-p", str(folder / "f2b.pid")],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: "Jail 'sshd' started" in text(own_log), 20, "fail2ban did not start its jail")
        yield auth_log, own_log, socket
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def action_output(own_log: Path, ip: str) -> str:
    """fail2ban's log from the ban of `ip` on, once the action has returned."""
    wait_until(lambda: "-- returned" in text(own_log).partition(f"Ban {ip}")[2], 20,
               f"the action did not run; fail2ban's log:\n{text(own_log)}")
    return text(own_log).partition(f"Ban {ip}")[2]


@pytest.fixture
def fail2ban(tmp_path) -> Iterator[tuple[Path, Path, Path, Path]]:
    """fail2ban with the action and a stand-in `report` that appends its arguments and stdin to calls.log;
    yields the jail's log, fail2ban's log, fail2ban's socket and calls.log."""
    calls = tmp_path / "calls.log"
    stand_in = tmp_path / "report"
    stand_in.write_text(f"#!/bin/sh\n{{ printf 'args: %s\\n' \"$*\"; cat; }} >> '{calls}'\n")
    stand_in.chmod(0o755)
    action = f'netimmune[category=ssh-brute-force, report="{stand_in}", configdir="{tmp_path}"]'
    with running_fail2ban(tmp_path, action, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}) as (auth_log, own_log, socket):
        yield auth_log, own_log, socket, calls


def test_fail2ban_manual_ban_is_not_reported_and_the_action_says_why(fail2ban):
    """`fail2ban-client set sshd banip` bans with no failure and no log line: a report would accuse the
    address's owner with nothing behind it. The action skips it, succeeds, and says why in fail2ban's log."""
    _, own_log, socket, calls = fail2ban
    subprocess.run(["fail2ban-client", "-s", str(socket), "set", "sshd", "banip", ATTACKER], check=True,
                   capture_output=True, timeout=20)
    after_ban = action_output(own_log, ATTACKER)
    assert "-- returned successfully 0" in after_ban and "ERROR" not in after_ban, after_ban
    assert f"netimmune: {ATTACKER} not reported: banned without matched log lines" in after_ban
    assert not calls.exists()


def test_fail2ban_ban_for_failures_runs_report_with_the_matched_lines(fail2ban):
    """The skip is for bans without evidence only: three failed logins are still reported, lines and count."""
    auth_log, own_log, _, calls = fail2ban
    now = time.strftime("%b %d %H:%M:%S")
    lines = "".join(f"{now} bastion sshd[4242]: Failed password for root from {ATTACKER} port {50000 + n} ssh2\n"
                    for n in range(3))
    with auth_log.open("a") as log:
        log.write(lines)
    after_ban = action_output(own_log, ATTACKER)
    assert "-- returned successfully 0" in after_ban, after_ban
    assert text(calls) == (f"args: --ssh-brute-force {ATTACKER} --no-fallback --comment fail2ban jail sshd: banned "
                           f"after 3 failures\n{lines}")
