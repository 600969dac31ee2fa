"""`make demo` runs `netimmune demo`: the whole story must reach its summary, quickly, and clean up."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def test_demo_confirms_the_proxy_refutes_the_web_server_and_stops_everything():
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "chalicelib.cli.netimmune", "demo"], capture_output=True,
                            text=True, timeout=120, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    proxy_row = next(line for line in lines if line.startswith("│ 127.0.1.20"))
    web_row = next(line for line in lines if line.startswith("│ 127.0.1.21"))
    assert "confirmed" in proxy_row and "yes" in proxy_row and "1.25" in proxy_row
    assert "refuted" in web_row and "no" in web_row and "0.5" in web_row
    assert "blocklist for firewalls = 127.0.1.20" in result.stdout
    assert time.monotonic() - started < 120
    assert not running("socks5://127.0.1.20:3128") and not running("netimmune-demo-")


def running(needle: str) -> bool:
    """Whether any process has needle in its command line (read from /proc, no tools needed)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if needle in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                return True
        except OSError:
            continue
    return False
