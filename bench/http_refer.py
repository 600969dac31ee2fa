"""Refer requests per second over HTTP through `netimmune serve`, as a ratio to a bare WSGI app.

`netimmune serve` answers `GET /v1/refer/{ip}` through the WSGI adapter over Chalice's local
gateway on waitress. This benchmark starts it on loopback over the million-delegation database of
bench/refer.py (built there if missing), and beside it the same waitress settings serving a bare
`def app(environ, start_response)` that returns one fixed referral answer (a real one, of average
size). The same keep-alive load generator (wrk) drives each in turn with random refer paths, mostly
inside delegated space and the rest outside it (404 answers). The ratio of the two request rates is
the figure that matters (target >= 0.5): it says what the node's stack costs on top of the WSGI
server itself, whatever the machine. Servers are pinned to one core, wrk to another, when there are
two; everything runs on 127.0.0.1 and is stopped before the benchmark exits.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from chalicelib.adapters.sqlite_db import SQLiteDatabase
from chalicelib.adapters.sqlite_store import SQLiteDelegationStore
from refer import CACHE, MIN_COUNT, SEED, VERSION, bench_key, build, probe_texts

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.5
HOST = "127.0.0.1"
SERVER_THREADS = 8  # `netimmune serve --threads` default
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
SAMPLE = 500        # probes fetched one by one before the load, to check answers and size the bare body
WARMUP_SECONDS = 2

# One wrk thread on its own core, keep-alive connections, a random probe path per request; per-status
# counts and latency come back as one JSON line from done().
WRK_SCRIPT = """
local paths, threads, next_id = {}, {}, 0
function setup(thread)
  next_id = next_id + 1
  thread:set("id", next_id)
  table.insert(threads, thread)
end
function init(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  math.randomseed(tonumber(args[2]) + id)
  statuses = {}
end
function request()
  return wrk.format(nil, paths[math.random(#paths)])
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do counts[status] = (counts[status] or 0) + n end
  end
  local parts = {}
  for status, n in pairs(counts) do parts[#parts + 1] = string.format('"%d": %d', status, n) end
  local e = summary.errors
  io.write(string.format('{"requests": %d, "duration_us": %d, "socket_errors": %d, "statuses": {%s}, '
    .. '"p50_us": %d, "p99_us": %d}\\n', summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, table.concat(parts, ", "),
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Server:
    """A server subprocess on loopback."""

    url: str
    pid: int

    def cpu_seconds(self) -> float | None:
        """User + system CPU the process used so far (Linux /proc), None where that cannot be read."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Load:
    """One wrk run against one server, and the CPU time the server spent on it."""

    requests: int
    seconds: float
    socket_errors: int
    statuses: Counter
    p50_ms: float
    p99_ms: float
    server_cpu: float | None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_per_request_us(self) -> float | None:
        return None if self.server_cpu is None else self.server_cpu / self.requests * 1e6


# -- the baseline server --------------------------------------------------------------------------
def bare_app(body: bytes):
    """The cheapest WSGI answer: a fixed JSON body, no routing, no parsing."""
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]

    def app(environ, start_response):
        start_response("200 OK", headers)
        return [body]
    return app


def serve_wsgi(app, port: int) -> None:
    """Run a WSGI app with the settings `netimmune serve` gives waitress, until SIGTERM."""
    from waitress import create_server

    from chalicelib.adapters.wsgi import MAX_BODY

    server = create_server(app, host=HOST, port=port, threads=SERVER_THREADS,
                           ident="netimmune", clear_untrusted_proxy_headers=True, max_request_body_size=MAX_BODY)
    signal.signal(signal.SIGTERM, lambda *_: server.close())
    try:
        server.run()
    except (KeyboardInterrupt, OSError):
        pass


# -- processes ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_until_listening(process: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server not listening on {HOST}:{port} after {START_TIMEOUT:.0f} s:\n"
                     f"{log.read_text()[-2000:]}")


@contextmanager
def running(command: Sequence[str], port: int, log: Path, env: dict[str, str]) -> Iterator[Server]:
    """A server subprocess for the duration of the block. Always stopped on the way out."""
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        wait_until_listening(process, port, log)
        yield Server(f"http://{HOST}:{port}", process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


def pick_cores() -> tuple[set[int] | None, set[int] | None, str]:
    """A core for the servers and another for the load generator, when the platform allows it."""
    if not hasattr(os, "sched_setaffinity"):
        return None, None, "not pinned (no sched_setaffinity on this platform)"
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None, "not pinned (one core): servers and wrk share it"
    return {cores[0]}, {cores[1]}, f"servers pinned to CPU {cores[0]}, wrk to CPU {cores[1]}"


def pin(cores: set[int] | None) -> None:
    """Pin this process; the servers and wrk started afterwards inherit it."""
    if cores is not None:
        os.sched_setaffinity(0, cores)


# -- the measurement ------------------------------------------------------------------------------
def sample_answers(base: str, paths: Sequence[str]) -> tuple[Counter, bytes, float]:
    """Fetch paths one by one: the status mix, the answer nearest the mean size (the baseline's body) and
    that mean."""
    statuses: Counter = Counter()
    bodies = []
    with httpx.Client(base_url=base, timeout=10) as client:
        for path in paths:
            response = client.get(path)
            statuses[response.status_code] += 1
            bodies.append(response.content)
    mean = statistics.mean(len(body) for body in bodies)
    return statuses, min(bodies, key=lambda body: abs(len(body) - mean)), mean


def load(server: Server, script: Path, paths_file: Path, seconds: int, connections: int, seed: int) -> Load:
    command = ["wrk", "--threads", "1", "--connections", str(connections), "--duration", f"{seconds:g}s",
               "--timeout", "5s", "--script", str(script), server.url, "--", str(paths_file), str(seed)]
    cpu_before = server.cpu_seconds()
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30, check=True)
    cpu_after = server.cpu_seconds()
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    return Load(summary["requests"], summary["duration_us"] / 1e6, summary["socket_errors"],
                Counter({int(k): v for k, v in summary["statuses"].items()}),
                summary["p50_us"] / 1e3, summary["p99_us"] / 1e3,
                None if cpu_before is None or cpu_after is None else cpu_after - cpu_before)


def measure(refer: Server, bare: Server, run, rounds: int) -> tuple[list[Load], list[Load]]:
    """Warm both up, then rounds of both, the order flipped each round so drift hits both alike."""
    run(refer, WARMUP_SECONDS)
    run(bare, WARMUP_SECONDS)
    refer_loads: list[Load] = []
    bare_loads: list[Load] = []
    for index in range(rounds):
        if index % 2:
            bare_loads.append(run(bare))
            refer_loads.append(run(refer))
        else:
            refer_loads.append(run(refer))
            bare_loads.append(run(bare))
    return refer_loads, bare_loads


def statuses_text(statuses: Counter) -> str:
    total = sum(statuses.values()) or 1
    return ", ".join(f"{status} {n / total:.1%}" for status, n in sorted(statuses.items()))


def node_env(directory: Path) -> dict[str, str]:
    """No NETIMMUNE_* settings from the caller's shell; alerts (none expected) go to the scratch folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETIMMUNE_")}
    env["NETIMMUNE_OUTBOX"] = str(directory / "outbox")
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="delegations (default 1,000,000)")
    parser.add_argument("--probes", type=int, default=20_000, help="distinct refer paths (default 20,000)")
    parser.add_argument("--seconds", type=int, default=10, help="per server per round (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of both servers (default 2)")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections (default 16)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached database file")
    parser.add_argument("--bare-wsgi", nargs=2, metavar=("PORT", "BODY_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_wsgi:
        serve_wsgi(bare_app(Path(args.bare_wsgi[1]).read_bytes()), int(args.bare_wsgi[0]))
        return
    if args.count < MIN_COUNT or min(args.probes, args.rounds, args.connections) < 1 or args.seconds < 1:
        parser.error(f"--count must be at least {MIN_COUNT}, --seconds at least 1, the others positive")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    console = Console()
    server_cores, client_cores, pinning = pick_cores()
    console.print(f"http refer benchmark: wrk, {args.connections} keep-alive connections; {pinning}")

    path = CACHE / f"refer-{args.count}-v{VERSION}.db"
    if args.rebuild or not path.exists():
        console.print(f"building {path} ({args.count:,} signed delegations)")
        build(path, args.count, console)
    store = SQLiteDelegationStore(SQLiteDatabase(path))
    count = store.db.connection.execute("SELECT COUNT(*) FROM delegations").fetchone()[0]
    paths = [f"/v1/refer/{text}" for text in probe_texts(store, args.probes, random.Random(SEED + 2))]
    store.db.connection.close()

    with tempfile.TemporaryDirectory(prefix="netimmune-http-refer-") as scratch:
        directory = Path(scratch)
        key_file, paths_file, script, body_file = (directory / name for name in
                                                   ("node.key", "paths.txt", "refer.lua", "body.json"))
        bench_key("node").save(key_file)
        paths_file.write_text("".join(f"{p}\n" for p in paths))
        script.write_text(WRK_SCRIPT)
        refer_port = free_port()
        serve = [sys.executable, "-m", "chalicelib.cli.netimmune", "serve", "--db", str(path),
                 "--key", str(key_file), "--anchor", bench_key("anchor").public, "--dev", "--no-worker",
                 "--host", HOST, "--port", str(refer_port), "--threads", str(SERVER_THREADS)]
        env = node_env(directory)
        pin(server_cores)
        with running(serve, refer_port, directory / "serve.log", env) as refer_server:
            pin(client_cores)
            with console.status("checking answers"):
                sampled, body, mean_size = sample_answers(refer_server.url, paths[:SAMPLE])
            if set(sampled) - {200, 404}:
                raise SystemExit(f"unexpected answers from {refer_server.url}: {statuses_text(sampled)}")
            body_file.write_bytes(body)
            bare_port = free_port()
            bare = [sys.executable, str(Path(__file__).resolve()), "--bare-wsgi", str(bare_port),
                    str(body_file)]
            pin(server_cores)
            with running(bare, bare_port, directory / "bare.log", env) as bare_server:
                pin(client_cores)

                def run(server: Server, seconds: int = args.seconds) -> Load:
                    return load(server, script, paths_file, seconds, args.connections, SEED)

                with console.status(f"measuring: {args.rounds} rounds of {args.seconds:g} s per server"):
                    refer_loads, bare_loads = measure(refer_server, bare_server, run, args.rounds)

    # Each round pairs the two a few seconds apart, so the median of per-round ratios shrugs off drift.
    ratio = statistics.median(r.rate / b.rate for r, b in zip(refer_loads, bare_loads))
    refer_statuses = sum((r.statuses for r in refer_loads), Counter())
    socket_errors = sum(run.socket_errors for run in refer_loads + bare_loads)
    table = Table(title=f"HTTP refer vs bare WSGI on waitress ({SERVER_THREADS} threads): "
                        f"median of {args.rounds} rounds of {args.seconds:g} s")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("delegations", f"{count:,}")
    table.add_row("refer answers (wrk)", statuses_text(refer_statuses))
    table.add_row("bare WSGI body", f"{len(body):,} bytes, a refer answer (mean {mean_size:,.0f})")
    for name, loads in (("refer", refer_loads), ("bare WSGI", bare_loads)):
        table.add_row(f"requests/s ({name})", f"{statistics.median(r.rate for r in loads):,.0f}")
        table.add_row(f"latency p50 / p99 ({name})", f"{statistics.median(r.p50_ms for r in loads):.1f} / "
                                                     f"{statistics.median(r.p99_ms for r in loads):.1f} ms")
    cpu = {name: [r.cpu_per_request_us for r in loads] for name, loads in
           (("refer", refer_loads), ("bare WSGI", bare_loads))}
    if None not in cpu["refer"] + cpu["bare WSGI"]:
        # CPU per request does not move with other load on the host as much as the rates do
        for name, values in cpu.items():
            table.add_row(f"server CPU per request ({name})", f"{statistics.median(values):,.0f} µs")
        table.add_row("ratio of CPU per request (bare/refer)",
                      f"{statistics.median(b / r for r, b in zip(cpu['refer'], cpu['bare WSGI'])):.2f}")
    table.add_row("socket errors", f"{socket_errors:,}")
    table.add_row("ratio", f"{ratio:.2f}")
    console.print(table)
    print(f"ratio http refer/bare wsgi: {ratio:.2f} (target >= {TARGET})")


if __name__ == "__main__":
    main()
