"""`report --bulk` against a tree of its own: three owners, unowned loopback space, interruptions.

The tree: the root delegates 127.0.0.0/16 (not all of 127/8) to an ISP, which delegates 127.0.1.0/24
and 127.0.2.0/24 to two customers. So the ISP, the two customers and nobody (127.5.0.0/24 and ::1,
the root answers "none") all hold part of the CSV's addresses, without leaving loopback.
"""
from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

import httpx
import pytest

from chalicelib.cli.localnet import LocalNode
from chalicelib.protocol.keys import KeyPair

LINES = 10_000
UNTHROTTLED = {"NETIMMUNE_KEY_RATE_PER_MINUTE": "1000000", "NETIMMUNE_CLIENT_RATE_PER_MINUTE": "1000000"}
CATEGORIES = {"18,22": "ssh-brute-force", "10": "spam", "21": "web-attack", "4": "ddos", "5,18": "brute-force"}
COMMENTS = ("", "sshd: Failed password for root", 'web: "GET /wp-login.php", then POST',
            "two lines:\nsecond line")
OWNED_PREFIXES = ("127.0.9", "127.0.1", "127.0.2")     # the ISP's own space, customer 1, customer 2
UNOWNED = tuple(f"127.5.0.{n}" for n in range(1, 20)) + ("::1",)


def run_report(args, env, timeout=120):
    return subprocess.run([sys.executable, "-m", "chalicelib.cli.report", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


class BulkTree(NamedTuple):
    root_url: str
    anchor: str
    owners: dict[str, LocalNode]    # by the /24 they answer for, as "a.b.c"


@pytest.fixture(scope="module")
def bulk_tree(tmp_path_factory):
    """Owners that take any rate, and one for 127.0.3.0/24 that takes 5 reports a minute."""
    folder = tmp_path_factory.mktemp("bulk-tree")
    root = LocalNode("root", folder)
    anchor = root.create_key()
    isp, first, second = (LocalNode(name, folder, anchor=anchor, env=UNTHROTTLED)
                          for name in ("isp", "customer1", "customer2"))
    throttled = LocalNode("throttled", folder, anchor=anchor, env={"NETIMMUNE_KEY_RATE_PER_MINUTE": "5"})
    nodes = (root, isp, first, second, throttled)
    customers = {"127.0.1.0/24": first, "127.0.2.0/24": second, "127.0.3.0/24": throttled}
    with ThreadPoolExecutor() as pool:     # each step is a few processes that mostly wait: run them side by side
        try:
            list(pool.map(LocalNode.create_key, nodes[1:]))
            list(pool.map(LocalNode.start, nodes))
            isp.install(root.grant("127.0.0.0/16", isp))
            list(pool.map(lambda prefix, customer: customer.install(isp.grant(prefix, customer)),
                          customers, customers.values()))
            yield BulkTree(root.url, anchor, dict(zip(OWNED_PREFIXES + ("127.0.3",), nodes[1:])))
        finally:
            list(pool.map(LocalNode.stop, nodes))


@pytest.fixture(scope="module")
def reporter_env(bulk_tree, tmp_path_factory):
    env = {**os.environ, "NETIMMUNE_CONFIG_DIR": str(tmp_path_factory.mktemp("bulk-reporter"))}
    env.pop("NETIMMUNE_ROOT_URL", None)
    env.pop("NETIMMUNE_ROOT_KEY", None)
    result = run_report(["init", "--root-url", bulk_tree.root_url, "--root-key", bulk_tree.anchor, "--dev",
                         "--org", "Example CERT"], env)
    assert result.returncode == 0, result.stderr
    return env


def bulk_csv(rows: list[tuple[str, str, str, str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(("IP", "Categories", "ReportDate", "Comment"))
    writer.writerows(rows)
    return out.getvalue()


def generated_rows(rng: random.Random, now: datetime):
    """10,000 rows: owned and recent, unowned, too old to be accepted, unparseable; the kind of each."""
    def date(age: timedelta) -> str:
        return (now - age).isoformat(timespec="seconds")

    def owned_ip() -> str:
        return f"{rng.choice(OWNED_PREFIXES)}.{rng.randint(1, 40)}"

    def recent() -> str:
        return date(timedelta(seconds=rng.randint(60, 3 * 86400)))

    rows = [((owned_ip(), rng.choice(list(CATEGORIES)), recent(), rng.choice(COMMENTS)), "owned")
            for _ in range(9_399)]
    rows.append(rows[0])    # an identical line is a second report, not a resend
    rows += [((rng.choice(UNOWNED), "18,22", recent(), ""), "unowned") for _ in range(400)]
    rows += [((owned_ip(), "10", date(timedelta(days=90)), "old"), "too old") for _ in range(150)]
    rows += [(("127.0.1.300", "10", recent(), ""), "unparseable") for _ in range(20)]
    rows += [((owned_ip(), "15", recent(), ""), "unparseable") for _ in range(20)]
    rows += [((owned_ip(), "10", "last tuesday", ""), "unparseable") for _ in range(10)]
    rng.shuffle(rows)
    assert len(rows) == LINES
    return rows


def stored_reports(node: LocalNode, network: str) -> Counter:
    """Reports a node holds about addresses in network (a /24 as "a.b.c"), by (ip, category), read
    through its API as an operator would."""
    reader = node.token("reader")
    cases = httpx.get(f"{node.url}/v1/cases", headers={"Authorization": f"Bearer {reader}"}, timeout=10).json()
    return Counter({(case["ip"], case["category"]): case["reports"] for case in cases["cases"]
                    if case["ip"].rsplit(".", 1)[0] == network})


def wait_for_delivery(state_file, process, timeout=30.0) -> dict:
    """The state once some batches are delivered and the import is still going."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the import ended before it could be interrupted"
        if state_file.exists():
            state = json.loads(state_file.read_text())
            if state["counts"].get("delivered", 0) >= 1000:
                return state
        time.sleep(0.01)
    raise AssertionError(f"no batch was delivered within {timeout} s")


def test_interrupted_bulk_import_resumes_and_delivers_every_line_once(bulk_tree, reporter_env, tmp_path):
    """Killed mid-import (SIGKILL, like a crash) and run again: each owner stores each of its lines
    once, and every other line is counted and listed once, with its reason."""
    rows = generated_rows(random.Random(7), datetime.now(timezone.utc))
    source = tmp_path / "abuseipdb.csv"
    source.write_text(bulk_csv([row for row, _ in rows]))
    state_file = tmp_path / "abuseipdb.csv.state.json"
    args = ["--bulk", str(source), "--batch-size", "250", "--json"]

    first = subprocess.Popen([sys.executable, "-m", "chalicelib.cli.report", *args], env=reporter_env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        interrupted = wait_for_delivery(state_file, first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    assert not interrupted["finished"]

    resumed = run_report(args, reporter_env)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    kinds = Counter(kind for _, kind in rows)
    assert summary["delivered"] + summary["duplicate"] == kinds["owned"]
    assert (summary["rejected"], summary["unowned"], summary["unparseable"]) == (150, 400, 50)
    assert summary["reasons"] == {"rejected": {"timestamp_too_old": 150}, "unowned": {"no_owner": 400},
                                  "unparseable": {"bad_ip": 20, "no_category": 20, "bad_date": 10}}

    expected = {prefix: Counter() for prefix in OWNED_PREFIXES}
    for (ip, categories, _, _), kind in rows:
        if kind == "owned":
            expected[ip.rsplit(".", 1)[0]][(ip, CATEGORIES[categories])] += 1
    for prefix in OWNED_PREFIXES:
        assert stored_reports(bulk_tree.owners[prefix], prefix) == expected[prefix], f"{prefix}.0/24"

    with open(summary["unsent_file"], newline="") as unsent:
        listed = Counter(row["Outcome"] for row in csv.DictReader(unsent))
    assert listed == {"rejected": 150, "unowned": 400, "unparseable": 50}


def test_a_csv_imported_again_from_scratch_is_answered_as_duplicates(bulk_tree, reporter_env, tmp_path):
    """Report ids come from the lines themselves, so even without the state nothing is stored twice."""
    now = datetime.now(timezone.utc)
    rows = [(f"127.0.8.{n}", "21", (now - timedelta(minutes=n)).isoformat(), "") for n in range(30)]
    source = tmp_path / "again.csv"
    source.write_text(bulk_csv(rows))

    runs = [run_report(["--bulk", str(source), "--state", str(tmp_path / f"run{n}.json"), "--json"], reporter_env)
            for n in (1, 2)]
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    first, second = (json.loads(r.stdout) for r in runs)
    assert (first["delivered"], first["duplicate"]) == (30, 0)
    assert (second["delivered"], second["duplicate"]) == (0, 30)
    stored = stored_reports(bulk_tree.owners["127.0.9"], "127.0.8")
    assert stored == Counter({(ip, "web-attack"): 1 for ip, *_ in rows})


def test_an_owner_that_keeps_rate_limiting_stops_the_import_within_max_wait(bulk_tree, reporter_env, tmp_path):
    """A node allowing 5 reports a minute takes part of a batch of 12 and rate-limits the rest: the lines it
    took are handled, the others left for a rerun once another wait would pass --max-wait, and the
    import exits 1 saying so."""
    now = datetime.now(timezone.utc).isoformat()
    source = tmp_path / "throttled.csv"
    source.write_text(bulk_csv([(f"127.0.3.{n}", "10", now, "") for n in range(1, 13)]))

    started = time.monotonic()
    result = run_report(["--bulk", str(source), "--batch-size", "12", "--max-wait", "3", "--json"], reporter_env)
    assert result.returncode == 1
    assert "rate-limits this reporter key" in result.stderr and "--max-wait 3" in result.stderr
    assert time.monotonic() - started < 20
    state = json.loads((tmp_path / "throttled.csv.state.json").read_text())
    assert state["left_lines"] and not state["finished"]
    assert state["counts"].get("delivered", 0) + len(state["left_lines"]) == 12
    answer = json.loads(result.stdout)   # one document: the error and the summary of what was done
    assert answer["error"]["code"] == "bulk_incomplete" and answer["left"] == len(state["left_lines"])


@pytest.mark.parametrize("content,message", [
    ("IP,Categories,ReportDate,Comment\n127.0.1.5,10,2026-01-01T00:00:00,Grüße\n".encode("latin-1"),
     "is not UTF-8 text"),
])
def test_a_csv_that_cannot_be_read_is_refused_clearly(tmp_path, content, message):
    """Before any lookup or state: nothing to resume, and the message says what is wrong with the file."""
    env = {**os.environ, "NETIMMUNE_CONFIG_DIR": str(tmp_path / "reporter")}
    assert run_report(["init", "--root-url", "http://127.0.0.1:9", "--root-key", KeyPair.generate().public, "--dev"],
                      env).returncode == 0
    source = tmp_path / "export.csv"
    source.write_bytes(content)
    result = run_report(["--bulk", str(source), "--json"], env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert message in json.loads(result.stdout)["error"]["message"]
    assert not (tmp_path / "export.csv.state.json").exists()
