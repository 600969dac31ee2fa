"""Real node processes on loopback, for `netimmune demo`, end-to-end tests and benchmarks.

Each node is a `netimmune serve` subprocess with its own database and key in a work folder; a tree
is a root, an ISP and a customer wired together by real grants and installs, as operators would.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def netimmune(*args: str, env: dict | None = None, stdin: str | None = None) -> str:
    """Run the netimmune command as an operator would; its output, or an error with its message."""
    result = subprocess.run([sys.executable, "-m", "chalicelib.cli.netimmune", *args], input=stdin,
                            capture_output=True, text=True, env=env, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"netimmune {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


@dataclass
class LocalNode:
    name: str
    folder: Path
    anchor: str | None = None
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    env: dict = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def db(self) -> Path:
        return self.folder / f"{self.name}.db"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def key(self) -> str:
        return netimmune("keys", "show", "--db", str(self.db)).strip()

    def options(self) -> list[str]:
        options = ["--db", str(self.db), "--endpoint", self.url, "--dev"]
        return options + (["--anchor", self.anchor] if self.anchor else [])

    def create_key(self) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        return netimmune("keys", "new", "--db", str(self.db)).strip()

    def start(self, timeout: float = 20.0) -> None:
        log = open(self.folder / f"{self.name}.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chalicelib.cli.netimmune", "serve", *self.options(),
             "--host", self.host, "--port", str(self.port), *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"node {self.name} exited: {(self.folder / f'{self.name}.log').read_text()}")
            try:
                if httpx.get(f"{self.url}/v1/node", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"node {self.name} did not answer on {self.url} within {timeout}s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def grant(self, prefix: str, child: LocalNode, days: int | None = None) -> dict:
        args = ["delegate", "grant", prefix, "--holder", child.key, "--to", child.url, *self.options()]
        return json.loads(netimmune(*args, *(["--days", str(days)] if days else [])))

    def install(self, granted: dict) -> str:
        return netimmune("delegate", "install", "-", *self.options(), stdin=json.dumps(granted))

    def token(self, role: str) -> str:
        return netimmune("token", "create", "--role", role, *self.options()).strip()


@dataclass
class LocalTree:
    """root → isp → customer on loopback: the root delegates 127.0.0.0/8, the ISP 127.0.1.0/24."""

    root: LocalNode
    isp: LocalNode
    customer: LocalNode

    @classmethod
    def start(cls, folder: Path, isp_prefix: str = "127.0.0.0/8", customer_prefix: str = "127.0.1.0/24",
              customer_args: tuple[str, ...] = (), customer_env: dict | None = None) -> LocalTree:
        """Start the three nodes; the customer's may take extra serve options and environment (policy)."""
        root = LocalNode("root", folder)
        anchor = root.create_key()
        isp = LocalNode("isp", folder, anchor=anchor)
        customer = LocalNode("customer", folder, anchor=anchor, extra_args=customer_args, env=customer_env or {})
        isp.create_key()
        customer.create_key()
        tree = cls(root, isp, customer)
        try:
            for node in tree.nodes:
                node.start()
            isp.install(root.grant(isp_prefix, isp))
            customer.install(isp.grant(customer_prefix, customer))
        except BaseException:
            tree.stop()
            raise
        return tree

    @property
    def nodes(self) -> tuple[LocalNode, ...]:
        return (self.root, self.isp, self.customer)

    @property
    def anchor(self) -> str:
        return self.root.key

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
