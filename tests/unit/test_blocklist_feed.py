"""The blocklist feeds as text, without a node: what a firewall loads."""
from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from chalicelib.core.blocklist import FeedQuery, feed
from chalicelib.core.ports import Block
from tests.conftest import NOW, FixedClock


def feed_of(blocks, **query):
    node = SimpleNamespace(verifications=SimpleNamespace(blocklist=lambda now: blocks), clock=FixedClock())
    return feed(node, FeedQuery(**query)).body


def test_nft_feed_flushes_both_sets_before_adding_the_current_entries():
    """A set only declared with its elements keeps those of every earlier load: the file must flush it."""
    body = feed_of([Block("127.0.0.5", "spam", NOW + timedelta(days=1), "spam confirmed"),
                    Block("2001:db8::1", "ddos", NOW + timedelta(days=1), "ddos confirmed")], fmt="nft")
    statements = [line for line in body.splitlines() if not line.startswith("#")]
    assert statements == [
        "table inet netimmune {",
        "\tset blocklist_v4 {", "\t\ttype ipv4_addr", "\t\tflags interval", "\t}",
        "\tset blocklist_v6 {", "\t\ttype ipv6_addr", "\t\tflags interval", "\t}",
        "}",
        "flush set inet netimmune blocklist_v4",
        "flush set inet netimmune blocklist_v6",
        "add element inet netimmune blocklist_v4 { 127.0.0.5 }",
        "add element inet netimmune blocklist_v6 { 2001:db8::1 }",
    ]


def test_an_empty_nft_feed_still_flushes_both_sets():
    """An empty blocklist must empty the firewall's sets, not leave the last load's addresses in them."""
    body = feed_of([], fmt="nft")
    assert "flush set inet netimmune blocklist_v4\nflush set inet netimmune blocklist_v6\n" in body
    assert "add element" not in body
