"""Blocklist feeds for firewalls: plain text (an external dynamic list), JSON, and an nftables set file.

A firewall polls the feed every minute or so; the ETag is a hash of the body, so an unchanged feed
answers 304 with nothing to transfer.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass

from ..protocol.categories import CATEGORIES
from ..protocol.encoding import format_time
from .errors import BadRequest
from .node import Node
from .ports import Block

FORMATS = {"text": "text/plain; charset=utf-8", "json": "application/json", "nft": "text/plain; charset=utf-8"}


@dataclass(frozen=True)
class FeedQuery:
    fmt: str = "text"
    categories: frozenset[str] | None = None
    min_score: float = 0.0
    aggregate_v6: bool = False   # IPv6 addresses as their /64: one end site, one entry

    @classmethod
    def parse(cls, params: dict[str, str]) -> FeedQuery:
        fmt = params.get("format", "text")
        if fmt not in FORMATS:
            raise BadRequest(f"unknown format {fmt!r}; use {', '.join(FORMATS)}", code="bad_format")
        categories = None
        if params.get("category"):
            categories = frozenset(params["category"].split(","))
            unknown = sorted(categories - set(CATEGORIES))
            if unknown:
                raise BadRequest(f"unknown category {', '.join(unknown)}", code="bad_category")
        try:
            min_score = float(params.get("min_score", 0))
        except ValueError:
            raise BadRequest("min_score must be a number", code="bad_min_score") from None
        if params.get("aggregate", "") not in ("", "64"):
            raise BadRequest("aggregate takes only 64 (IPv6 addresses as their /64)", code="bad_aggregate")
        return cls(fmt, categories, min_score, params.get("aggregate") == "64")


@dataclass(frozen=True)
class Feed:
    body: str
    content_type: str
    etag: str

    def unchanged_for(self, if_none_match: str | None) -> bool:
        """Whether an If-None-Match header names this feed (RFC 9110 §13.1.2: a list of tags compared weakly,
        or `*`), so the poller's copy is current and the answer is 304."""
        if not if_none_match:
            return False
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or self.etag in tags


def _entries(blocks: Iterable[Block], query: FeedQuery) -> dict[str, list[Block]]:
    """Blocked networks (as text) with the blocks behind each, filtered and aggregated as asked."""
    entries: dict[str, list[Block]] = {}
    for block in blocks:
        if query.categories is not None and block.category not in query.categories:
            continue
        if block.score < query.min_score:
            continue
        network = ipaddress.ip_network(block.ip)
        if query.aggregate_v6 and network.version == 6:
            network = network.supernet(new_prefix=64)
        entries.setdefault(str(network.network_address if network.num_addresses == 1 else network), []).append(block)
    return dict(sorted(entries.items(), key=lambda item: (ipaddress.ip_network(item[0]).version,
                                                          ipaddress.ip_network(item[0]))))


def _nft(entries: dict[str, list[Block]]) -> str:
    """An nftables file that makes two interval sets exactly the blocklist, however often it is loaded.

    Declaring a set that exists changes nothing, and a declaration's elements are only added to it, so the
    file declares the table and sets (which creates them on a fresh firewall), flushes the sets and adds the
    entries: `nft -f` applies the file as one transaction, so no packet ever sees a set half loaded. A set is
    seen only from its own table; the operator's chains there survive a reload, as the table is never deleted.
    """
    lines = ["# netimmune blocklist: `nft -f FILE` makes the sets exactly this list; match with",
             "# ip saddr @blocklist_v4 and ip6 saddr @blocklist_v6 in chains you add to table inet netimmune.",
             "table inet netimmune {"]
    for version, kind in ((4, "ipv4_addr"), (6, "ipv6_addr")):
        lines += [f"\tset blocklist_v{version} {{", f"\t\ttype {kind}", "\t\tflags interval", "\t}"]
    lines += ["}", "flush set inet netimmune blocklist_v4", "flush set inet netimmune blocklist_v6"]
    for version in (4, 6):
        members = [name for name in entries if ipaddress.ip_network(name).version == version]
        if members:  # `{ }` is a syntax error: an empty set is just flushed
            lines.append(f"add element inet netimmune blocklist_v{version} {{ {', '.join(members)} }}")
    return "\n".join(lines) + "\n"


def feed(node: Node, query: FeedQuery) -> Feed:
    entries = _entries(node.verifications.blocklist(node.clock.now()), query)
    if query.fmt == "text":
        body = "".join(f"{name}\n" for name in entries)
    elif query.fmt == "nft":
        body = _nft(entries)
    else:
        body = json.dumps({"blocked": [
            {"entry": name, "categories": sorted({b.category for b in blocks}),
             "reason": "; ".join(sorted({b.reason for b in blocks})),
             "score": round(max(b.score for b in blocks), 4),
             "until": format_time(max(b.until for b in blocks))} for name, blocks in entries.items()]})
    return Feed(body, FORMATS[query.fmt], '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"')
