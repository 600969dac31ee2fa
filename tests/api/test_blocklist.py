"""The blocklist feeds firewalls poll: text, JSON and nftables, filtered, aggregated, cached by ETag."""
from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from datetime import timedelta

import pytest

from chalicelib.core.ports import Block
from tests.conftest import NOW

NFT = shutil.which("nft") or "/usr/sbin/nft"
BLOCKS = [
    Block("127.0.0.5", "open-proxy", NOW + timedelta(days=7), "open-proxy confirmed", 10.0),
    Block("127.0.0.6", "spam", NOW + timedelta(days=1), "spam reported", 2.0),
    Block("2001:db8::1", "open-proxy", NOW + timedelta(days=1), "open-proxy confirmed", 5.0),
    Block("2001:db8::2", "open-proxy", NOW + timedelta(days=2), "open-proxy confirmed", 6.0),
    Block("127.0.0.7", "spam", NOW - timedelta(seconds=1), "expired", 9.0),
]


@pytest.fixture
def blocked(api):
    for block in BLOCKS:
        api.node.verifications.block(block)
    api.appliance = api.token("appliance")
    return api


def get(api, query="", token=None, etag=None):
    headers = {"Authorization": f"Bearer {token or api.appliance}"}
    if etag:
        headers["If-None-Match"] = etag
    return api.client.http.get(f"/v1/blocklist{query}", headers=headers)


def test_text_feed_lists_live_blocks_one_per_line_and_round_trips_through_ipaddress(blocked):
    response = get(blocked)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    lines = response.body.decode().splitlines()
    assert [ipaddress.ip_network(line) for line in lines] == [ipaddress.ip_network(a) for a in
                                                               ("127.0.0.5", "127.0.0.6", "2001:db8::1", "2001:db8::2")]


def test_ipv6_aggregates_to_its_64(blocked):
    lines = get(blocked, "?aggregate=64").body.decode().splitlines()
    assert lines == ["127.0.0.5", "127.0.0.6", "2001:db8::/64"]


def test_filters_by_category_and_minimum_score(blocked):
    assert get(blocked, "?category=spam").body.decode().split() == ["127.0.0.6"]
    assert get(blocked, "?min_score=5.5").body.decode().split() == ["127.0.0.5", "2001:db8::2"]


def test_json_feed_carries_reason_score_and_expiry(blocked):
    entries = json.loads(get(blocked, "?format=json&aggregate=64").body)["blocked"]
    v6 = next(e for e in entries if e["entry"] == "2001:db8::/64")
    assert v6 == {"entry": "2001:db8::/64", "categories": ["open-proxy"], "reason": "open-proxy confirmed",
                  "score": 6.0, "until": "2026-11-28T12:00:00Z"}


def test_unchanged_feed_answers_304(blocked):
    first = get(blocked)
    etag = first.headers["ETag"]
    again = get(blocked, etag=etag)
    assert again.status_code == 304 and again.body in (b"", None)
    blocked.node.verifications.block(Block("127.0.0.9", "ddos", NOW + timedelta(days=1), "ddos", 1.0))
    assert get(blocked, etag=etag).status_code == 200


@pytest.mark.parametrize("if_none_match", ['W/{etag}', '"other", {etag}', "*"])
def test_if_none_match_compares_weakly_and_takes_a_list_or_a_star(blocked, if_none_match):
    etag = get(blocked).headers["ETag"]
    assert get(blocked, etag=if_none_match.format(etag=etag)).status_code == 304
    assert get(blocked, etag='"other", W/"another"').status_code == 200


def test_nftables_file_passes_nft_check_mode(blocked, tmp_path):
    path = tmp_path / "blocklist.nft"
    path.write_bytes(get(blocked, "?format=nft").body)
    result = subprocess.run([NFT, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "127.0.0.5" in path.read_text() and "2001:db8::2" in path.read_text()


def test_empty_nftables_file_is_still_valid(api, tmp_path):
    path = tmp_path / "empty.nft"
    path.write_bytes(api.client.http.get("/v1/blocklist?format=nft", headers={
        "Authorization": f"Bearer {api.token('appliance')}"}).body)
    result = subprocess.run([NFT, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def nft_sets_after_loading(*paths) -> dict[str, list[str]]:
    """Load the files in order with `nft -f`, in a network namespace of their own (so as a user, and without
    touching the host's firewall); the elements of each set of table inet netimmune then."""
    assert shutil.which("unshare") and subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0, \
        "loading nft files needs a user and network namespace of its own (unshare -rn, util-linux)"
    script = " && ".join(f'{NFT} -f "${index}"' for index in range(1, len(paths) + 1))
    result = subprocess.run(["unshare", "-rn", "sh", "-c", f"{script} && {NFT} -j list table inet netimmune", "sh",
                             *map(str, paths)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return {entry["set"]["name"]: [element if isinstance(element, str) else
                                   f"{element['prefix']['addr']}/{element['prefix']['len']}"
                                   for element in entry["set"].get("elem", [])]
            for entry in json.loads(result.stdout)["nftables"] if "set" in entry}


def test_loading_a_newer_nft_feed_drops_what_it_no_longer_lists(blocked, tmp_path):
    """On a fresh firewall, then again over the first load: the second file's list wins."""
    everything, only_spam = tmp_path / "everything.nft", tmp_path / "spam.nft"
    everything.write_bytes(get(blocked, "?format=nft&aggregate=64").body)
    only_spam.write_bytes(get(blocked, "?format=nft&category=spam").body)
    assert nft_sets_after_loading(everything) == {"blocklist_v4": ["127.0.0.5", "127.0.0.6"],
                                                  "blocklist_v6": ["2001:db8::/64"]}
    assert nft_sets_after_loading(everything, only_spam, only_spam) == {"blocklist_v4": ["127.0.0.6"],
                                                                       "blocklist_v6": []}


@pytest.mark.parametrize("query,code", [("?format=pdf", "bad_format"), ("?category=nope", "bad_category"),
                                        ("?min_score=high", "bad_min_score"), ("?aggregate=48", "bad_aggregate")])
def test_bad_queries_are_400(blocked, query, code):
    response = get(blocked, query)
    assert response.status_code == 400 and json.loads(response.body)["error"]["code"] == code


def test_the_feed_needs_an_appliance_or_admin_token(blocked):
    assert get(blocked, token=blocked.token("reader")).status_code == 403
    assert get(blocked, token=blocked.token("admin")).status_code == 200
