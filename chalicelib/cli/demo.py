"""`netimmune demo`: the whole story on loopback, narrated, in about a minute.

A root, an ISP and a customer node; a real open proxy (pproxy) and a plain web server in the customer's
space; two reporters call both "open proxy"; the customer's node verifies: the proxy is confirmed by a
canary hit, blocked and alerted, the web server refuted and its reporter's reputation lowered.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .localnet import LocalTree

PROXY = ("127.0.1.20", 3128)
WEB_SERVER = ("127.0.1.21", 8080)

DEMO_POLICY = """\
# The customer's policy for the demo: scan open-proxy reports at the first weighted report;
# block for 7 days and alert when confirmed; nothing when refuted (the reporter's reputation drops).
rules:
  - prefix: 127.0.1.0/24
    categories: [open-proxy]
    verify_at: 1
    alert_at: 100
    checks: [open-proxy]
    on_confirmed: [block: 7d, alert]
    on_refuted: none
"""

PROXY_LOG = b"1732600000.123 200 127.0.1.20 TCP_TUNNEL/200 4521 CONNECT mail.example.org:25 -\n"
WEB_LOG = b"127.0.1.21 - - [26/Nov/2026:10:00:00 +0000] \"GET http://example.com/ HTTP/1.1\" 200 512\n"


class _PlainSite(BaseHTTPRequestHandler):
    """A web server that answers 200 to anything: what a naive proxy check would call a proxy."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = b"<html><body>Welcome to a small business site.</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_CONNECT = do_POST = do_GET

    def log_message(self, *args):
        pass


def _start_web_server(stack: ExitStack) -> None:
    server = ThreadingHTTPServer(WEB_SERVER, _PlainSite)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stack.callback(server.server_close)
    stack.callback(server.shutdown)


def _start_proxy(stack: ExitStack, folder: Path) -> None:
    log = open(folder / "pproxy.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "pproxy", "-l", f"http+socks4+socks5://{PROXY[0]}:{PROXY[1]}"],
                               stdout=log, stderr=subprocess.STDOUT)
    stack.callback(process.wait, 10)
    stack.callback(process.terminate)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get("http://127.0.0.1:9/", proxy=f"http://{PROXY[0]}:{PROXY[1]}", timeout=0.5)
        except httpx.ProxyError:
            return
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"pproxy exited: {(folder / 'pproxy.log').read_text()}")
        time.sleep(0.1)


def _report(folder: Path, name: str, flag: str, ip: str, evidence: bytes, tree: LocalTree) -> dict:
    env = {**os.environ, "NETIMMUNE_CONFIG_DIR": str(folder / name)}
    command = [sys.executable, "-m", "chalicelib.cli.report"]
    init = subprocess.run([*command, "init", "--root-url", tree.root.url, "--root-key", tree.anchor, "--dev",
                           "--org", name, "--contact", f"abuse@{name}.example"], env=env, capture_output=True,
                          text=True, timeout=60)
    if init.returncode != 0:
        raise RuntimeError(init.stderr)
    sent = subprocess.run([*command, flag, ip, "--json"], input=evidence, env=env, capture_output=True, timeout=60)
    if sent.returncode != 0:
        raise RuntimeError(sent.stderr.decode())
    return json.loads(sent.stdout)


def _wait_for_verdicts(tree: LocalTree, token: str, ips: list[str], timeout: float = 60) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    cases: dict[str, dict] = {}
    while time.monotonic() < deadline:
        listing = httpx.get(f"{tree.customer.url}/v1/cases", headers={"Authorization": f"Bearer {token}"}).json()
        cases = {c["ip"]: c for c in listing["cases"]}
        if all(cases.get(ip, {}).get("status") in ("confirmed", "refuted", "inconclusive") for ip in ips):
            return cases
        time.sleep(0.3)
    raise RuntimeError(f"verification did not finish within {timeout:g}s: {cases}")


def run_demo(console: Console | None = None) -> None:
    console = console or Console(soft_wrap=True)  # lines wrap where the screen ends: a log keeps URLs whole
    say = console.print
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="netimmune-demo-") as temp, ExitStack() as stack:
        folder = Path(temp)
        (folder / "policy.yaml").write_text(DEMO_POLICY)
        say("[bold]1. Three report nodes on loopback[/bold]: a root (the trust anchor), an ISP and its customer.")
        tree = LocalTree.start(folder, customer_args=("--policy", str(folder / "policy.yaml")),
                               customer_env={"NETIMMUNE_CHECK_TIMEOUT": "2"})
        stack.callback(tree.stop)
        say(f"   root {tree.root.url} delegated 127.0.0.0/8 to the ISP {tree.isp.url};")
        say(f"   the ISP delegated 127.0.1.0/24 to the customer {tree.customer.url}. Every link is signed.")

        say("[bold]2. Two suspects in the customer's space[/bold]:")
        _start_proxy(stack, folder)
        _start_web_server(stack)
        say(f"   {PROXY[0]}:{PROXY[1]} runs pproxy, a real open proxy (HTTP, SOCKS4, SOCKS5);")
        say(f"   {WEB_SERVER[0]}:{WEB_SERVER[1]} is a plain web server that answers 200 to everything.")

        say("[bold]3. Two reporters run `report --open-proxy`[/bold], each with its own key and log lines:")
        first = _report(folder, "alice-cert", "--open-proxy", PROXY[0], PROXY_LOG, tree)
        second = _report(folder, "bob-scanner", "--open-proxy", WEB_SERVER[0], WEB_LOG, tree)
        for who, sent in (("alice-cert", first), ("bob-scanner", second)):
            say(f"   {who}: {' → '.join(sent['hops'])} — accepted as {sent['answer']['status']} "
                f"(report {sent['report_id'][:8]}…)")

        say("[bold]4. The customer's node verifies its own hosts[/bold]: it asks each suspect to fetch a "
            "one-time canary URL on the node itself; only a real proxy makes that request arrive.")
        reader = tree.customer.token("reader")
        cases = _wait_for_verdicts(tree, reader, [PROXY[0], WEB_SERVER[0]])
        for ip in (PROXY[0], WEB_SERVER[0]):
            verification = cases[ip]["verification"] or {}
            say(f"   {ip}: {cases[ip]['status']} — {verification.get('summary', '')[:140]}")

        appliance = tree.customer.token("appliance")
        blocked = httpx.get(f"{tree.customer.url}/v1/blocklist?format=text",
                            headers={"Authorization": f"Bearer {appliance}"}).text.split()
        outbox = sorted((folder / "customer.outbox").glob("*.eml"))
        subjects = [message_from_bytes(p.read_bytes(), policy=policy.default)["Subject"] for p in outbox]
        say("[bold]5. Policy acted[/bold]: blocklist for firewalls = "
            f"{', '.join(blocked) or 'empty'}; alerts in the outbox: {len(outbox)}")
        for subject in subjects:
            say(f"   ✉ {escape(subject)}")

        table = Table(title="netimmune demo — summary")
        for column in ("address", "what it really is", "reported by", "verdict", "blocked", "reporter reputation"):
            table.add_column(column)
        for ip, truth, who in ((PROXY[0], "open proxy (pproxy)", "alice-cert"),
                               (WEB_SERVER[0], "plain web server", "bob-scanner")):
            case = cases[ip]  # the verdict and the reputation change are recorded together
            table.add_row(ip, truth, who, case["status"], "yes" if ip in blocked else "no",
                          f"{case['reporters'][0]['reputation']:g} (was 1)")
        console.print(table)
        say(f"Done in {time.monotonic() - started:.1f}s; stopping everything the demo started.")
