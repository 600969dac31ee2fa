"""The referral tree across three real node processes: root → ISP (127.0.0.0/8) → customer (127.0.1.0/24)."""
from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from chalicelib.client.fetch import Fetcher
from chalicelib.client.resolver import Failure, ResolutionError, Resolver
from chalicelib.cli.localnet import LocalNode
from chalicelib.protocol.keys import KeyPair
from tests.conftest import delegate

LOCAL = Fetcher(allow_local=True)   # dev mode: the tree is plain http on loopback


def test_resolver_finds_the_customer_for_its_space(tree):
    resolution = Resolver(tree.root.url, tree.anchor, LOCAL).resolve("127.0.1.9")
    assert resolution.owned
    assert resolution.endpoint == tree.customer.url
    assert resolution.prefix == "127.0.1.0/24"
    assert resolution.hops == (tree.root.url, tree.isp.url, tree.customer.url)
    assert len(resolution.chain) == 2


def test_resolver_finds_the_isp_for_space_it_kept(tree):
    resolution = Resolver(tree.root.url, tree.anchor, LOCAL).resolve("127.0.2.9")
    assert (resolution.endpoint, resolution.prefix) == (tree.isp.url, "127.0.0.0/8")
    assert resolution.hops == (tree.root.url, tree.isp.url)


def test_ipv6_outside_the_tree_has_no_owner(tree):
    resolution = Resolver(tree.root.url, tree.anchor, LOCAL).resolve("::1")
    assert resolution.answer == "none" and not resolution.owned


def test_resolver_rejects_a_chain_the_root_did_not_sign(tree):
    with pytest.raises(ResolutionError) as refused:
        Resolver(tree.root.url, KeyPair.generate().public, LOCAL).resolve("127.0.1.9")
    assert refused.value.failure is Failure.BAD_CHAIN
    assert "untrusted_root" in refused.value.message


def test_a_rogue_node_with_a_self_signed_chain_is_rejected(tree, tmp_path):
    rogue = LocalNode("rogue", tmp_path)
    rogue.create_key()
    rogue.start()
    try:
        # the rogue is a root of its own: its referral chain starts from its key, not the real root's
        token = rogue.token("admin")
        granted = httpx.post(f"{rogue.url}/v1/delegations", headers={"Authorization": f"Bearer {token}"},
                             json={"prefix": "127.0.0.0/8", "holder": KeyPair.generate().public,
                                   "endpoint": rogue.url})
        assert granted.status_code == 201
        with pytest.raises(ResolutionError) as refused:
            Resolver(rogue.url, tree.anchor, LOCAL).resolve("127.0.1.9")
        assert refused.value.failure is Failure.BAD_CHAIN
    finally:
        rogue.stop()


def test_cached_referral_skips_the_root_for_the_next_address(tree):
    resolver = Resolver(tree.root.url, tree.anchor, LOCAL)
    resolver.resolve("127.0.1.9")
    assert resolver.resolve("127.0.1.10").hops == (tree.customer.url,)
    assert resolver.resolve("127.0.3.1").hops == (tree.isp.url,)


def test_node_refuses_to_install_a_chain_the_root_did_not_sign(tree):
    stranger = KeyPair.generate()
    forged = delegate(stranger, "127.0.5.0/24", KeyPair.generate()).document
    with pytest.raises(RuntimeError, match="untrusted_root"):
        tree.customer.install({"chain": [forged]})


def test_report_dry_run_prints_the_endpoint_and_verified_chain_as_json(tree):
    result = subprocess.run([sys.executable, "-c", "from chalicelib.cli.report import main; main()",
                             "--dry-run", "--json", "127.0.1.9", "--root-url", tree.root.url,
                             "--root-key", tree.anchor, "--dev"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["endpoint"] == tree.customer.url
    assert answer["referral"]["answer"] == "authoritative"
    assert [link["delegation"]["prefix"] for link in answer["chain"]] == ["127.0.0.0/8", "127.0.1.0/24"]


def test_report_dry_run_explains_unowned_space_with_its_own_exit_code(tree):
    result = subprocess.run([sys.executable, "-c", "from chalicelib.cli.report import main; main()",
                             "--dry-run", "::1", "--root-url", tree.root.url, "--root-key", tree.anchor, "--dev"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert "no owner of ::1 is registered" in result.stderr
