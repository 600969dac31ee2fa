"""The ceilings under the two open benchmark targets: the best ratio any implementation could reach here.

http_refer.py and ingest.py compare the node with a baseline (bare WSGI; bare Ed25519 verify). This one
measures, in the same way and in one run, stripped-down stand-ins that do only what no implementation
can skip, so the room a target leaves is a measurement rather than an opinion:

- `http`: Chalice routes through the same WSGI adapter and waitress settings as `netimmune serve`, each
  beside the bare WSGI app of http_refer.py: a route answering a fixed body (the stack alone); one doing
  a primary-key point lookup on the million-delegation file (the "raw lookup" of refer.py); one running
  the node's own longest-match query with no validation, answer building or middleware; and the node.
- `ingest`: per report only the canonical bytes, the signature check and one INSERT by report_id into
  SQLite with the node's settings (WAL, synchronous=FULL), a transaction per batch, against bare verify.
"""
from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import time
import zlib
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

import orjson

from chalicelib.adapters.sqlite_db import SQLiteDatabase
from chalicelib.adapters.sqlite_store import _LONGEST_MATCH, SQLiteDelegationStore
from chalicelib.protocol.prefixes import parse_ip
from chalicelib.protocol.signing import signature_problem
from http_refer import (HOST, SAMPLE, SERVER_THREADS, WRK_SCRIPT, free_port, load, measure, node_env, pick_cores, pin,
                        running, sample_answers, serve_wsgi)
from ingest import make_envelopes, pin_to_one_core, verify_rate, verify_work
from refer import CACHE, SEED, VERSION, bench_key, probe_texts

ROUTES = ("fixed", "primary-key", "node-query")


def reference_app(route: str, path: Path):
    """A one-route Chalice app behind the node's WSGI adapter, doing only what `route` names."""
    from chalice import Response

    from chalicelib.adapters.wsgi import ChaliceWSGI, ThreadSafeChalice

    db = SQLiteDatabase(path)
    count = db.connection.execute("SELECT MAX(id) FROM delegations").fetchone()[0]
    app = ThreadSafeChalice(app_name=f"floor-{route}")
    app.api.binary_types = []

    def answer(body: str) -> Response:
        return Response(body=body, status_code=200, headers={"Content-Type": "application/json"})

    @app.route("/v1/refer/{ip}", methods=["GET"], content_types=[])
    def refer(ip):
        if route == "fixed":
            return answer('{"answer": "none"}')
        if route == "primary-key":
            row = db.connection.execute("SELECT document FROM delegations WHERE id = ?",
                                        (zlib.crc32(ip.encode()) % count + 1,)).fetchone()
        else:
            address = parse_ip(ip)
            row = db.connection.execute(_LONGEST_MATCH, (address.version, address.packed)).fetchone()
        return answer(row[1 if route == "node-query" else 0] if row else "{}")
    return ChaliceWSGI(app)


def http_floors(seconds: int, rounds: int) -> None:
    path = CACHE / f"refer-1000000-v{VERSION}.db"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run bench/refer.py once to build it")
    store = SQLiteDelegationStore(SQLiteDatabase(path))
    paths = [f"/v1/refer/{text}" for text in probe_texts(store, 20_000, random.Random(SEED + 2))]
    store.db.connection.close()
    server_cores, client_cores, pinning = pick_cores()
    print(f"http floors: wrk, 16 keep-alive connections; {pinning}")
    with tempfile.TemporaryDirectory(prefix="netimmune-floors-") as scratch, ExitStack() as stack:
        directory = Path(scratch)
        paths_file, script, body_file, key_file = (directory / name for name in
                                                   ("paths.txt", "refer.lua", "body.json", "node.key"))
        paths_file.write_text("".join(f"{p}\n" for p in paths))
        script.write_text(WRK_SCRIPT)
        bench_key("node").save(key_file)
        env = node_env(directory)

        def start(name: str, command: list[str], port: int):
            pin(server_cores)
            server = stack.enter_context(running(command, port, directory / f"{name}.log", env))
            pin(client_cores)
            return server

        port = free_port()
        servers = {"node": start("node", [
            sys.executable, "-m", "chalicelib.cli.netimmune", "serve", "--db", str(path), "--key", str(key_file),
            "--anchor", bench_key("anchor").public, "--dev", "--no-worker", "--host", HOST, "--port", str(port),
            "--endpoint", f"http://{HOST}:{port}", "--threads", str(SERVER_THREADS)], port)}
        for route in ROUTES:
            port = free_port()
            servers[route] = start(route, [sys.executable, __file__, "--serve", route, str(port), str(path)], port)
        _, body, _ = sample_answers(servers["node"].url, paths[:SAMPLE])
        body_file.write_bytes(body)
        port = free_port()
        bare = start("bare", [sys.executable, str(Path(__file__).with_name("http_refer.py")), "--bare-wsgi",
                              str(port), str(body_file)], port)

        def run(server, duration: int = seconds):
            return load(server, script, paths_file, duration, 16, SEED)

        print(f"{'server':<12} {'ratio to bare WSGI':>18} {'server CPU per request':>24}")
        for name in (*ROUTES, "node"):
            loads, bares = measure(servers[name], bare, run, rounds)
            ratio = statistics.median(a.rate / b.rate for a, b in zip(loads, bares))
            cpu = statistics.median(a.cpu_per_request_us or 0 for a in loads)
            bare_cpu = statistics.median(b.cpu_per_request_us or 0 for b in bares)
            print(f"{name:<12} {ratio:>18.2f} {cpu:>12,.0f} µs (bare {bare_cpu:,.0f})", flush=True)


def ingest_floor(count: int) -> None:
    print(f"ingest floor: {count:,} reports, batches of 1,000; {pin_to_one_core(0)}")
    envelopes = make_envelopes(count, datetime.now(timezone.utc).replace(microsecond=0), lambda: None)
    work = verify_work(envelopes[:20_000])
    gc.freeze()
    with tempfile.TemporaryDirectory(prefix="netimmune-floors-") as directory:
        db = SQLiteDatabase(Path(directory) / "floor.db",
                            "CREATE TABLE reports (report_id TEXT PRIMARY KEY, envelope TEXT NOT NULL);")
        rates = [verify_rate(work)]
        start = time.perf_counter()
        for first in range(0, count, 1000):
            rows = []
            for envelope in envelopes[first:first + 1000]:
                if signature_problem(envelope["report"], envelope["signature"]):
                    raise SystemExit("a benchmark report does not verify")
                rows.append((envelope["report"]["report_id"], orjson.dumps(envelope).decode()))
            with db.transaction() as conn:
                conn.executemany("INSERT INTO reports VALUES (?, ?)", rows)
        seconds = time.perf_counter() - start
        rates.append(verify_rate(work))
    verify = max(rates)
    print(f"verify + canonical bytes + one durable insert: {count / seconds:,.0f} reports/s "
          f"({seconds / count * 1e6:.1f} µs), verify {verify:,.0f}/s; ratio {count / seconds / verify:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", nargs="?", choices=("http", "ingest", "both"), default="both")
    parser.add_argument("--seconds", type=int, default=10, help="http: per server per round (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="http: rounds per server (default 2)")
    parser.add_argument("--count", type=int, default=100_000, help="ingest: reports (default 100,000)")
    parser.add_argument("--serve", nargs=3, metavar=("ROUTE", "PORT", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_wsgi(reference_app(args.serve[0], Path(args.serve[2])), int(args.serve[1]))
        return
    if args.which in ("http", "both"):
        http_floors(args.seconds, args.rounds)
    if args.which in ("ingest", "both"):   # last: it pins this process to one core
        ingest_floor(args.count)


if __name__ == "__main__":
    main()
