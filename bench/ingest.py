"""Batch intake of signed reports per second, as a ratio to pynacl's raw Ed25519 verify rate.

`POST /v1/reports/batch` hands up to 1,000 envelopes to `core.intake.submit`; this benchmark calls
exactly that, in process, on one core, into a fresh SQLite file, for 100,000 realistic reports of about
1 KB each (a few log lines of evidence, reporter org/contact/domain, port, comment) from 1,000 reporter
keys about 20,000 addresses, so cases and contributions see real upsert traffic. Every report needs one
Ed25519 verify, the irreducible cost of a signed report; the ratio of the intake rate to the rate of
bare `VerifyKey.verify` calls over the same canonical bytes, measured in the same run, says how much
everything else costs (target >= 0.5), whatever the machine.

Envelopes are generated and signed before timing. Addresses are loopback (a dev-mode node holding
127.0.0.0/8): they are only data here, no traffic is sent. The SQLite file lives in a fresh temporary
directory (TMPDIR chooses where; the node writes with synchronous=FULL, so the disk counts).
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import os
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nacl.signing
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from chalicelib.core.delegations import install
from chalicelib.core.intake import MAX_BATCH, admit, submit
from chalicelib.core.node import Node
from chalicelib.core.referral import refer_address
from chalicelib.core.targets import refuse_special
from chalicelib.protocol.categories import by_slug
from chalicelib.protocol.delegation import issue_delegation
from chalicelib.protocol.encoding import b64url_decode
from chalicelib.protocol.keys import KeyPair, parse_public_key
from chalicelib.protocol.prefixes import parse_prefix
from chalicelib.protocol.report import Evidence, build_report, parse_report, sign_envelope
from chalicelib.protocol.signing import canonical_bytes, signature_problem
from chalicelib.settings import Settings
from chalicelib.wiring import build_node

SEED = 20240612
TARGET = 0.5
HELD = "127.0.0.0/8"
REPORTERS = 1000
ADDRESSES = 20_000
ADDRESS_SKEW = 0.8     # popularity of the n-th address ~ 1 / n**skew: a few are reported by many
MAX_AGE_HOURS = 72     # reports observed within the last three days
BREAKDOWN_SAMPLE = 5000
UNLIMITED = 10**9
RAW_VERIFY = "raw Ed25519 verify (pynacl)"
ADMIT = "admit (every check, record built)"


@dataclass(frozen=True)
class Scenario:
    """One kind of abuse: its category, the port it is seen on, and log lines a reporter attaches."""

    slug: str
    port: int
    content_type: str
    description: str
    lines: tuple[str, ...]   # str.format fields: ip, port, time, n, host
    comments: tuple[str, ...]


SCENARIOS = (
    Scenario("ssh-brute-force", 22, "text/plain", "sshd auth.log excerpt", (
        "{time} {host} sshd[{n}]: Invalid user admin from {ip} port {port}",
        "{time} {host} sshd[{n}]: Failed password for invalid user admin from {ip} port {port} ssh2",
        "{time} {host} sshd[{n}]: Failed password for root from {ip} port {port} ssh2",
        "{time} {host} sshd[{n}]: Connection closed by authenticating user root {ip} port {port} [preauth]",
        "{time} {host} sshd[{n}]: Disconnecting authenticating user root {ip} port {port}: Too many "
        "authentication failures [preauth]"),
     ("Repeated SSH password guessing against our bastion hosts; fail2ban banned the source.",
      "Dictionary attack on SSH, several hundred attempts in an hour.")),
    Scenario("open-proxy", 3128, "text/plain", "proxy probe transcript", (
        "{time} probe {n}: CONNECT canary-{n}.probe.example:443 HTTP/1.1 via {ip}:{port}",
        "{time} probe {n}: HTTP/1.1 200 Connection established (Squid/4.13)",
        "{time} probe {n}: GET http://canary-{n}.probe.example/token HTTP/1.1 via {ip}:{port}",
        "{time} probe {n}: canary token fetched from {ip}, proxy relays arbitrary traffic",
        "{time} probe {n}: X-Forwarded-For absent, Via: 1.1 {host} (squid/4.13)"),
     ("Unauthenticated HTTP proxy relaying to arbitrary hosts; used in credential stuffing against us.",
      "Open proxy confirmed with a canary fetch.")),
    Scenario("port-scan", 0, "text/plain", "firewall drop log", (
        "{time} {host} kernel: [UFW BLOCK] IN=eth0 SRC={ip} DST=198.51.100.7 PROTO=TCP SPT={n} DPT=23 SYN",
        "{time} {host} kernel: [UFW BLOCK] IN=eth0 SRC={ip} DST=198.51.100.8 PROTO=TCP SPT={n} DPT=2323 SYN",
        "{time} {host} kernel: [UFW BLOCK] IN=eth0 SRC={ip} DST=198.51.100.9 PROTO=TCP SPT={n} DPT=445 SYN",
        "{time} {host} kernel: [UFW BLOCK] IN=eth0 SRC={ip} DST=198.51.100.10 PROTO=TCP SPT={n} DPT=3389 SYN",
        "{time} {host} kernel: [UFW BLOCK] IN=eth0 SRC={ip} DST=198.51.100.11 PROTO=TCP SPT={n} DPT=5900 SYN"),
     ("Horizontal scan across our /24, telnet, SMB, RDP and VNC.",
      "Sequential SYN scan of every host in the range.")),
    Scenario("spam", 25, "message/rfc822", "received headers of the spam", (
        "Received: from mail{n}.bulk.example ([{ip}]) by {host} with ESMTP id {n}; {time}",
        "From: \"Account Security\" <no-reply@secure-login.example>",
        "Subject: Your mailbox is almost full - verify now",
        "X-Spam-Status: Yes, score=14.2 required=5.0 tests=BAYES_99,RCVD_IN_SBL,URIBL_BLACK",
        "Authentication-Results: {host}; spf=fail smtp.mailfrom=secure-login.example; dkim=none"),
     ("Phishing-themed spam wave from this host, several thousand messages to our users.",
      "Snowshoe spam, SPF failing, listed by two of our filters.")),
    Scenario("web-attack", 443, "text/plain", "web server access log", (
        "{ip} - - [{time}] \"GET /wp-login.php HTTP/1.1\" 404 162 \"-\" \"Mozilla/5.0 zgrab/0.x\"",
        "{ip} - - [{time}] \"GET /.env HTTP/1.1\" 404 162 \"-\" \"Mozilla/5.0 zgrab/0.x\"",
        "{ip} - - [{time}] \"POST /cgi-bin/luci/;stok=/locale HTTP/1.1\" 404 162 \"-\" \"curl/7.68.0\"",
        "{ip} - - [{time}] \"GET /vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php HTTP/1.1\" 404 162",
        "{ip} - - [{time}] \"GET /?s=/Index/\\think\\app/invokefunction HTTP/1.1\" 400 0 \"-\" \"-\""),
     ("Vulnerability scanning of our web front ends, known exploit paths.",
      "Automated exploit attempts against PHP and router admin paths.")),
)


def bench_key(label: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(f"netimmune-bench:{label}".encode()).digest())


def reporter_identity(index: int) -> dict:
    """What a report says about who sent it: reserved names, never contacted."""
    return {"org": f"AS{64512 + index} Network Operations", "contact": f"abuse@isp{index}.example",
            "domain": f"isp{index}.example"}


class FixedClock:
    def __init__(self, moment: datetime):
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


# -- the data set ---------------------------------------------------------------------------------
def plan_addresses(rng: random.Random) -> list[tuple[str, Scenario]]:
    """Distinct addresses in the held /8, each seen doing one kind of abuse."""
    values = rng.sample(range(1, 2**24 - 1), ADDRESSES)
    return [(f"127.{v >> 16}.{(v >> 8) & 255}.{v & 255}", rng.choice(SCENARIOS)) for v in values]


def make_report(rng: random.Random, ip: str, scenario: Scenario, index: int, observed: datetime) -> dict:
    lines = []
    for offset, template in enumerate(rng.sample(scenario.lines, rng.randint(3, len(scenario.lines)))):
        moment = observed - timedelta(seconds=offset * rng.randint(1, 90))
        lines.append(template.format(ip=ip, port=rng.randint(1024, 65535), n=rng.randint(1000, 99999),
                                     time=moment.strftime("%b %d %H:%M:%S"), host=f"edge{index % 7}"))
    evidence = (Evidence(scenario.content_type, ("\n".join(lines) + "\n").encode(), scenario.description),)
    return build_report(by_slug(scenario.slug), ip, reporter_identity(index), observed, evidence=evidence,
                        port=scenario.port or None, comment=rng.choice(scenario.comments),
                        confidence=rng.choice((None, 0.8, 0.9, 0.95)),
                        report_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)))


def make_envelopes(count: int, now: datetime, tick: Callable[[], None]) -> list[dict]:
    rng = random.Random(SEED)
    reporters = [bench_key(f"reporter-{i}") for i in range(REPORTERS)]
    addresses = plan_addresses(rng)
    popularity = [1 / (rank + 1) ** ADDRESS_SKEW for rank in range(ADDRESSES)]
    envelopes = []
    for ip, scenario in rng.choices(addresses, weights=popularity, k=count):
        index = rng.randrange(REPORTERS)
        observed = now - timedelta(seconds=rng.randint(60, MAX_AGE_HOURS * 3600))
        envelopes.append(sign_envelope(make_report(rng, ip, scenario, index, observed), reporters[index]))
        tick()
    return envelopes


def make_node(directory: Path, now: datetime) -> Node:
    """A dev-mode node holding 127.0.0.0/8 from a root key, with rate limits out of the way."""
    anchor = bench_key("anchor")
    settings = Settings(db_path=directory / "node.db", trust_anchor=anchor.public, dev_mode=True,
                        key_rate_per_minute=UNLIMITED, client_rate_per_minute=UNLIMITED)
    bench_key("node").save(settings.key_path)
    node = build_node(settings, FixedClock(now))
    held = issue_delegation(anchor, parse_prefix(HELD), node.key.public, "http://127.0.0.1:8080", 1,
                            now - timedelta(days=1), now + timedelta(days=365))
    install(node, [held.document])
    return node


# -- the measurement ------------------------------------------------------------------------------
VerifyWork = tuple[Callable[[bytes, bytes], bytes], bytes, bytes]


@dataclass
class Timing:
    """Wall-clock and CPU seconds: what wall adds to CPU is waiting, mostly for the disk to sync commits."""

    wall: float = 0.0
    cpu: float = 0.0


def verify_work(envelopes: Sequence[dict]) -> list[VerifyWork]:
    """Bare pynacl verify calls over each report's canonical bytes, keys and signatures decoded beforehand."""
    keys: dict[str, nacl.signing.VerifyKey] = {}
    work = []
    for envelope in envelopes:
        signature = envelope["signature"]
        if signature["key"] not in keys:
            keys[signature["key"]] = parse_public_key(signature["key"])
        work.append((keys[signature["key"]].verify, canonical_bytes(envelope["report"]),
                     b64url_decode(signature["sig"])))
    return work


def verify_rate(work: Sequence[VerifyWork]) -> float:
    start = time.perf_counter()
    for verify, message, signature in work:
        verify(message, signature)
    return len(work) / (time.perf_counter() - start)


def ingest(node: Node, envelopes: Sequence[dict], batch: int, tick: Callable[[int], None]) -> tuple[Timing, Counter]:
    timing, statuses = Timing(), Counter()
    for first in range(0, len(envelopes), batch):
        chunk = envelopes[first:first + batch]
        wall, cpu = time.perf_counter(), time.process_time()
        answers = submit(node, chunk)
        timing.wall += time.perf_counter() - wall
        timing.cpu += time.process_time() - cpu
        statuses.update(answer.status for answer in answers)
        tick(len(chunk))
    return timing, statuses


def cpu_us(items: Sequence, step: Callable, rounds: int = 3) -> float:
    """CPU µs per item, best of a few rounds: another process sharing the core does not count."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for item in items:
            step(item)
        best = min(best, time.process_time() - start)
    return best / len(items) * 1e6


def breakdown(node: Node, envelopes: Sequence[dict]) -> list[tuple[str, float]]:
    """The steps of admit() one by one, over reports already stored (admit stores nothing)."""
    now = node.clock.now()
    dev_mode = node.settings.dev_mode
    addresses = [parse_report(e["report"]).ip for e in envelopes]

    def ownership(ip) -> None:
        refuse_special(ip, dev_mode)
        refer_address(node, ip)

    return [
        (RAW_VERIFY, cpu_us(verify_work(envelopes), lambda w: w[0](w[1], w[2]))),
        ("canonical_bytes (JCS of the report)", cpu_us(envelopes, lambda e: canonical_bytes(e["report"]))),
        ("signature_problem (canonical + key + verify)",
         cpu_us(envelopes, lambda e: signature_problem(e["report"], e["signature"]))),
        ("parse_report (format, evidence hashes)", cpu_us(envelopes, lambda e: parse_report(e["report"]))),
        ("ownership (refuse_special + refer_address)", cpu_us(addresses, ownership)),
        (ADMIT, cpu_us(envelopes, lambda e: admit(node, e, now))),
    ]


def pin_to_one_core(cpu: int) -> str:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity on this platform)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="reports (default 100,000)")
    parser.add_argument("--batch", type=int, default=MAX_BATCH, help=f"envelopes per submit (default {MAX_BATCH})")
    parser.add_argument("--verifies", type=int, default=20_000, help="raw verifies per round (default 20,000)")
    parser.add_argument("--cpu", type=int, default=0, help="the core to pin to (default 0)")
    args = parser.parse_args()
    if args.count < 1 or not 1 <= args.batch <= MAX_BATCH or args.verifies < 1:
        parser.error(f"--count and --verifies must be positive and --batch from 1 to {MAX_BATCH}")
    console = Console()
    console.print(f"ingest benchmark: single core, in process; {pin_to_one_core(args.cpu)}")
    now = datetime.now(timezone.utc).replace(microsecond=0)

    columns = (TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("signing", total=args.count)
        envelopes = make_envelopes(args.count, now, lambda: progress.advance(task))
    size = sum(len(canonical_bytes(e["report"])) for e in envelopes[:1000]) / min(1000, len(envelopes))
    work = verify_work(envelopes[:args.verifies])
    # A server holds one request's envelopes at a time, not the whole data set: keep the data set out of
    # the garbage collector's full passes, which would otherwise walk its million containers during intake
    gc.freeze()

    with tempfile.TemporaryDirectory(prefix="netimmune-ingest-") as directory:
        node = make_node(Path(directory), now)
        verify_rates = [verify_rate(work)]
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("ingesting", total=args.count)
            timing, statuses = ingest(node, envelopes, args.batch, lambda n: progress.advance(task, n))
        verify_rates.append(verify_rate(work))
        with console.status("breakdown"):
            steps = breakdown(node, envelopes[:BREAKDOWN_SAMPLE])
        count = node.reports.db.connection.execute
        stored = (f"{count('SELECT COUNT(*) FROM cases').fetchone()[0]:,} cases, "
                  f"{count('SELECT COUNT(*) FROM contributions').fetchone()[0]:,} contributions")
        db_size = sum(p.stat().st_size for p in Path(directory).glob("node.db*"))

    wall_us, cpu_per_report = timing.wall / args.count * 1e6, timing.cpu / args.count * 1e6
    verify = max(verify_rates)
    ratio = 1e6 / wall_us / verify
    table = Table(title=f"batch intake of {args.count:,} signed reports, batches of {args.batch:,}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("report size (canonical, mean)", f"{size:,.0f} bytes")
    table.add_row("reporters / addresses", f"{REPORTERS:,} keys / {ADDRESSES:,} addresses")
    table.add_row("stored", stored)
    table.add_row("database size", f"{db_size / 2**20:,.0f} MiB")
    table.add_row("reports/s (submit)", f"{1e6 / wall_us:,.0f}  ({wall_us:,.1f} µs/report)")
    table.add_row(f"verify/s (pynacl, best of 2x{len(work):,})", f"{verify:,.0f}  ({1e6 / verify:,.1f} µs/verify)")
    table.add_row("ratio", f"{ratio:.2f}")
    table.add_row("ratio of CPU times alone (no waiting)", f"{dict(steps)[RAW_VERIFY] / cpu_per_report:.2f}")
    console.print(table)

    sample = min(BREAKDOWN_SAMPLE, args.count)
    parts = Table(title=f"µs per report (steps alone: CPU, best of 3 over {sample:,} reports)")
    parts.add_column("step")
    parts.add_column("µs", justify="right")
    for name, micros in steps:
        parts.add_row(name, f"{micros:.1f}")
    parts.add_row("rest of submit: rate limits, storage, policy, answers", f"{cpu_per_report - dict(steps)[ADMIT]:.1f}")
    parts.add_row("submit, CPU", f"{cpu_per_report:.1f}")
    parts.add_row("waiting (wall - CPU): disk syncs, other processes", f"{wall_us - cpu_per_report:.1f}")
    parts.add_row("submit, wall clock", f"{wall_us:.1f}")
    console.print(parts)

    refused = {status: n for status, n in statuses.items() if status != 202}
    if refused:
        console.print(f"[red]not every report was accepted as new: {refused}[/red]")
        return 1
    print(f"ratio ingest/verify: {ratio:.2f} (target >= {TARGET})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
