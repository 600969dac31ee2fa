"""Refer lookups per second, as a ratio to a raw primary-key lookup on the same SQLite file.

A node answers every refer request with one longest-prefix match over the delegations it holds and
has granted. This benchmark loads a million nested delegations (IPv4 /8-/32 and IPv6 /19-/64, half
and half), then times what the refer route does per request, `store.longest_match(parse_ip(text))`
and reading `.role`, against `SELECT * FROM delegations WHERE id = ?` through the same connection,
on one core, in one run. The ratio of the two rates is the figure that matters (target >= 0.5): it
says how close a referral comes to the cheapest lookup the database can do, whatever the machine.

The built database is cached in bench/.cache/ under the count and VERSION, so reruns take seconds.
"""
from __future__ import annotations

import argparse
import hashlib
import ipaddress
import os
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

from chalicelib.adapters.sqlite_db import SQLiteDatabase
from chalicelib.adapters.sqlite_store import SQLiteDelegationStore
from chalicelib.core.ports import Role
from chalicelib.protocol.delegation import Delegation, issue_delegation
from chalicelib.protocol.keys import KeyPair
from chalicelib.protocol.prefixes import IPAddress, IPNetwork, parse_ip, special_purpose

VERSION = 1  # bump whenever the generated data changes, so a stale cached file is not reused
SEED = 20240611
CACHE = Path(__file__).resolve().parent / ".cache"
TARGET = 0.5
MIN_COUNT = 1000
MIN_ROUNDS = 3

# Each family's tree: a few held tops, then granted levels, each nested in the level above (now and
# then in one further up, so depth varies). LEVEL_SHARES are of the family's count; the last level
# takes the rest.
V4_TOPS, V6_TOPS = 12, 6
V4_LEVELS = ((16,), (24,), (28, 29, 30, 31, 32))
V6_LEVELS = ((48,), (56,), (64,))
LEVEL_SHARES = (0.003, 0.06)
SKIP_LEVEL = 0.1
# /8s with no special-purpose range inside, so every held address is one a report may target
V4_TOP_OCTETS = [o for o in range(1, 224) if o not in (10, 100, 127, 169, 172, 192, 198, 203)]
V6_RIR_BLOCKS = (0x240, 0x260, 0x280, 0x2A0, 0x2C0)  # the /12s the RIRs allocate from

# Probe mix: an address inside a random delegation, anywhere in held space, or outside it.
INSIDE_DELEGATION, INSIDE_HELD = 0.6, 0.3

NOT_BEFORE = datetime(2025, 1, 1, tzinfo=timezone.utc)
NOT_AFTER = datetime(2027, 1, 1, tzinfo=timezone.utc)
HOLDER_POOL = 64
NODE_ENDPOINT = "https://reports.node.example"
PK_QUERY = "SELECT * FROM delegations WHERE id = ?"


@dataclass(frozen=True)
class Node:
    """One delegation to issue: its prefix and the index of the node it nests in (None for a top)."""

    prefix: IPNetwork
    parent: int | None


def bench_key(label: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(f"netimmune-bench:{label}".encode()).digest())


def holder_endpoint(index: int) -> str:
    """Realistic-looking endpoints under reserved names: never resolved, never contacted."""
    if index % 2:
        return f"https://reports.as{64512 + index}.example"
    return f"https://abuse.isp{index}.test/netimmune"


# -- the data set ---------------------------------------------------------------------------------
def plan_tops(version: int, rng: random.Random) -> list[IPNetwork]:
    if version == 4:
        return [ipaddress.ip_network((octet << 24, 8)) for octet in rng.sample(V4_TOP_OCTETS, V4_TOPS)]
    slash16s = rng.sample([(block << 4) | low for block in V6_RIR_BLOCKS for low in range(16)], V6_TOPS)
    tops = []
    for slash16 in slash16s:  # distinct /16s, so tops of /19-/32 never overlap
        plen = rng.randint(19, 32)
        tops.append(ipaddress.ip_network(((slash16 << 112) | (rng.getrandbits(plen - 16) << (128 - plen)),
                                          plen)))
    return tops


def plan_family(version: int, count: int, rng: random.Random) -> list[Node]:
    """`count` distinct prefixes of one family: tops first, every other one inside an earlier one."""
    width = 32 if version == 4 else 128
    tops = plan_tops(version, rng)
    nodes = [Node(prefix, None) for prefix in tops]
    sizes = [max(1, round(share * count)) for share in LEVEL_SHARES]
    sizes.append(count - len(tops) - sum(sizes))
    seen = {(int(p.network_address), p.prefixlen) for p in tops}
    tiers = [list(range(len(nodes)))]
    for lengths, size in zip(V4_LEVELS if version == 4 else V6_LEVELS, sizes, strict=True):
        tier: list[int] = []
        while len(tier) < size:
            parent = rng.choice(tiers[-1] if rng.random() >= SKIP_LEVEL else rng.choice(tiers))
            outer, plen = nodes[parent].prefix, rng.choice(lengths)
            base = int(outer.network_address) | (rng.getrandbits(plen - outer.prefixlen) << (width - plen))
            if (base, plen) not in seen:
                seen.add((base, plen))
                tier.append(len(nodes))
                nodes.append(Node(ipaddress.ip_network((base, plen)), parent))
        tiers.append(tier)
    return nodes


def sign_family(nodes: Sequence[Node], node_key: KeyPair, anchor: KeyPair, holders: Sequence[KeyPair],
                rng: random.Random, tick: Callable[[], None]) -> list[Delegation]:
    """Tops are issued by the trust anchor to this node; every other prefix by its parent's holder."""
    signed: list[Delegation] = []
    holder_of: list[int] = []  # index into holders; -1 for this node
    for node in nodes:
        if node.parent is None:
            issuer, index = anchor, -1
        else:
            above = holder_of[node.parent]
            issuer = node_key if above < 0 else holders[above]
            index = rng.randrange(len(holders))
            while index == above:
                index = rng.randrange(len(holders))
        holder = node_key if index < 0 else holders[index]
        signed.append(issue_delegation(issuer, node.prefix, holder.public,
                                       NODE_ENDPOINT if index < 0 else holder_endpoint(index),
                                       rng.choice((1, 1, 1, 1, 2, 3)), NOT_BEFORE, NOT_AFTER))
        holder_of.append(index)
        tick()
    return signed


def build(path: Path, count: int, console: Console) -> None:
    """Sign and save `count` delegations through the store, into a file renamed into place when done."""
    rng = random.Random(SEED)
    families = {4: plan_family(4, count // 2, rng), 6: plan_family(6, count - count // 2, rng)}
    partial = path.with_name(path.stem + ".partial.db")
    for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
        leftover.unlink(missing_ok=True)
    db = SQLiteDatabase(partial)
    store = SQLiteDelegationStore(db)
    node_key, anchor = bench_key("node"), bench_key("anchor")
    holders = [bench_key(f"holder-{i}") for i in range(HOLDER_POOL)]
    columns = (TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("signing", total=count)
        for version, nodes in families.items():
            progress.update(task, description=f"signing IPv{version}")
            signed = sign_family(nodes, node_key, anchor, holders, rng, lambda: progress.advance(task))
            held = [d for d, node in zip(signed, nodes, strict=True) if node.parent is None]
            granted = [d for d, node in zip(signed, nodes, strict=True) if node.parent is not None]
            progress.update(task, description=f"saving IPv{version}")
            store.save_delegations(Role.HELD, held, [[d.document] for d in held])
            store.save_delegations(Role.GRANTED, granted)
    db.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.connection.close()
    os.replace(partial, path)


# -- the probes -----------------------------------------------------------------------------------
def outside_address(held: Sequence[IPNetwork], rng: random.Random) -> IPAddress:
    """A global unicast address in neither family's held space."""
    while True:
        if rng.random() < 0.5:
            address: IPAddress = ipaddress.IPv4Address(rng.getrandbits(32))
        else:
            address = ipaddress.IPv6Address((0b001 << 125) | rng.getrandbits(125))  # 2000::/3
        if special_purpose(address) is None and not any(
                address.version == top.version and address in top for top in held):
            return address


def probe_texts(store: SQLiteDelegationStore, count: int, rng: random.Random) -> list[str]:
    """Addresses as a refer request carries them: mostly inside delegated space, both families."""
    conn = store.db.connection
    held = [match.delegation.prefix for match in store.list_delegations(Role.HELD)]
    low, high = conn.execute("SELECT MIN(id), MAX(id) FROM delegations").fetchone()
    texts = []
    for _ in range(count):
        draw = rng.random()
        if draw < INSIDE_DELEGATION:
            family, first, last = conn.execute("SELECT family, first, last FROM delegations WHERE id = ?",
                                               (rng.randint(low, high),)).fetchone()
            value = rng.randint(int.from_bytes(first, "big"), int.from_bytes(last, "big"))
            address = ipaddress.IPv4Address(value) if family == 4 else ipaddress.IPv6Address(value)
        elif draw < INSIDE_DELEGATION + INSIDE_HELD:
            top = rng.choice(held)
            address = top[rng.randrange(top.num_addresses)]
        else:
            address = outside_address(held, rng)
        texts.append(str(address))
    return texts


# -- the measurement ------------------------------------------------------------------------------
def refer_rate(store: SQLiteDelegationStore, texts: Sequence[str]) -> tuple[float, Counter]:
    """What the refer route does per request: parse, longest match, read the answer kind."""
    longest_match = store.longest_match
    answers: Counter = Counter()
    start = time.perf_counter()
    for text in texts:
        match = longest_match(parse_ip(text))
        answers[match.role if match else None] += 1
    return len(texts) / (time.perf_counter() - start), answers


def pk_rate(store: SQLiteDelegationStore, ids: Sequence[int]) -> float:
    execute = store.db.connection.execute
    start = time.perf_counter()
    for row_id in ids:
        execute(PK_QUERY, (row_id,)).fetchone()
    return len(ids) / (time.perf_counter() - start)


def measure(store: SQLiteDelegationStore, texts: Sequence[str], ids: Sequence[int],
            seconds: float) -> tuple[list[float], list[float], Counter]:
    """Alternate refer and raw PK rounds for `seconds` (at least MIN_ROUNDS), after one warm-up each."""
    refer_rate(store, texts)
    pk_rate(store, ids)
    refer_rates: list[float] = []
    pk_rates: list[float] = []
    deadline = time.monotonic() + seconds
    while len(refer_rates) < MIN_ROUNDS or time.monotonic() < deadline:
        rate, answers = refer_rate(store, texts)
        refer_rates.append(rate)
        pk_rates.append(pk_rate(store, ids))
    return refer_rates, pk_rates, answers


def pin_to_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
        return "pinned to CPU 0"
    return "not pinned (no sched_setaffinity on this platform)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="delegations (default 1,000,000)")
    parser.add_argument("--lookups", type=int, default=20_000,
                        help="lookups of each kind per round (default 20,000)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help=f"keep alternating rounds this long, at least {MIN_ROUNDS} (default 10)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached database file")
    args = parser.parse_args()
    if args.count < MIN_COUNT or args.lookups < 1:
        parser.error(f"--count must be at least {MIN_COUNT} and --lookups at least 1")
    console = Console()
    console.print(f"refer benchmark: single core, in process; {pin_to_one_core()}")

    path = CACHE / f"refer-{args.count}-v{VERSION}.db"
    start = time.perf_counter()
    built = args.rebuild or not path.exists()
    if built:
        console.print(f"building {path} ({args.count:,} signed delegations)")
        build(path, args.count, console)
    db = SQLiteDatabase(path)
    store = SQLiteDelegationStore(db)
    roles = dict(db.connection.execute("SELECT role, COUNT(*) FROM delegations GROUP BY role").fetchall())
    setup = f"{'built' if built else 'loaded from cache'} in {time.perf_counter() - start:.1f} s"
    size = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())

    rng = random.Random(SEED + 1)
    texts = probe_texts(store, args.lookups, rng)
    low, high = db.connection.execute("SELECT MIN(id), MAX(id) FROM delegations").fetchone()
    ids = [rng.randint(low, high) for _ in range(args.lookups)]
    with console.status("measuring: alternating refer and raw PK rounds"):
        refer_rates, pk_rates, answers = measure(store, texts, ids, args.seconds)
    # Each round pairs the two measures a moment apart, so the median of the per-round ratios shrugs
    # off the machine speeding up or slowing down during the run.
    ratio = statistics.median(r / p for r, p in zip(refer_rates, pk_rates))

    table = Table(title=f"refer vs raw PK lookups: median of {len(refer_rates)} rounds of {args.lookups:,}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("delegations", f"{sum(roles.values()):,} (held {roles.get('held', 0):,}, "
                                 f"granted {roles.get('granted', 0):,})")
    table.add_row("build / load", setup)
    table.add_row("DB size", f"{size / 2**20:,.0f} MiB")
    table.add_row("lookups/s (refer)", f"{statistics.median(refer_rates):,.0f}")
    table.add_row("lookups/s (raw PK)", f"{statistics.median(pk_rates):,.0f}")
    table.add_row("ratio", f"{ratio:.2f}")
    console.print(table)
    mix = ", ".join(f"{kind.value if kind else 'none'} {n / len(texts):.0%}" for kind, n in answers.items())
    console.print(f"answers: {mix} (IPv4 and IPv6 probes)")
    print(f"ratio refer/pk: {ratio:.2f} (target >= {TARGET})")


if __name__ == "__main__":
    main()
