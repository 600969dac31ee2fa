"""The node's blocklist for firewalls: addresses blocked by policy until their block expires."""
from __future__ import annotations

import json

from ..protocol.encoding import format_time
from .errors import BadRequest
from .node import Node


def render(node: Node, fmt: str) -> tuple[str, str]:
    """The blocklist as plain text (one address per line) or JSON with reason, score and expiry."""
    entries = node.verifications.blocklist(node.clock.now())
    if fmt == "text":
        return "".join(f"{ip}\n" for ip in dict.fromkeys(e.ip for e in entries)), "text/plain"
    if fmt == "json":
        return json.dumps({"blocked": [{"ip": e.ip, "category": e.category, "reason": e.reason,
                                        "score": round(e.score, 4), "until": format_time(e.until)}
                                       for e in entries]}), "application/json"
    raise BadRequest(f"unknown format {fmt!r}; use text or json", code="bad_format")
