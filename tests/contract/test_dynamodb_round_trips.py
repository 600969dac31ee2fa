"""What the DynamoDB adapters promise beyond the shared contracts, counted request by request: a referral
is one request however many delegations there are, and writes cut short by a crash converge on retry."""
from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest

from chalicelib.adapters import dynamodb_reports
from chalicelib.core.ports import Outcome, Role
from chalicelib.protocol.keys import KeyPair
from tests.conftest import NOW, delegate
from tests.contract.conftest import make_dynamodb_stores
from tests.contract.test_report_store import DAY, record

PARENT = KeyPair.from_seed(b"\x01" * 32)
NODE = KeyPair.from_seed(b"\x02" * 32)
CHILD = KeyPair.from_seed(b"\x03" * 32)
HELD = ("127.0.0.0/8", "2001:db8::/32")
EVERY_CALL = "before-call.dynamodb.*"


class Crash(Exception):
    """The process died before this request left."""


@contextmanager
def requests_sent(client, crash_at: int | None = None) -> Iterator[list[str]]:
    """The operations the client sends inside the block; with crash_at, that request fails instead."""
    sent: list[str] = []

    def note(model, **_):
        if len(sent) == crash_at:
            raise Crash(model.name)
        sent.append(model.name)

    client.meta.events.register(EVERY_CALL, note)
    try:
        yield sent
    finally:
        client.meta.events.unregister(EVERY_CALL, note)


def children(held: str, count: int) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """`count` disjoint children at the start of held, of every length that fits, so many lengths are in use;
    the end of held stays the node's own."""
    network = ipaddress.ip_network(held)
    step_bits = (network.num_addresses // count).bit_length() - 1
    lengths = range(network.max_prefixlen - step_bits, min(network.max_prefixlen, 64) + 1)
    first = int(network.network_address)
    return [ipaddress.ip_network((first + (index << step_bits), lengths[index % len(lengths)]))
            for index in range(count)]


@pytest.mark.parametrize("delegations", [20, 1000])
def test_a_referral_is_one_batch_get_whatever_the_number_of_delegations(dynamodb_client, delegations):
    store = make_dynamodb_stores(dynamodb_client)[0]
    granted = {}
    for held in HELD:
        parent = delegate(PARENT, held, NODE)
        store.save_delegations(Role.HELD, [parent], [[parent.document]])
        granted[held] = children(held, delegations // 2)
        store.save_delegations(Role.GRANTED, [delegate(NODE, str(p), CHILD) for p in granted[held]])
    store.longest_match(ipaddress.ip_address("127.0.0.1"))  # warm-up: the first lookup reads the lengths in use

    for held in HELD:
        child = granted[held][1]
        with requests_sent(dynamodb_client) as sent:
            referral = store.longest_match(child.broadcast_address)
        assert sent == ["BatchGetItem"]
        assert (referral.role, referral.delegation.prefix) == (Role.GRANTED, child)
        assert [link["delegation"]["prefix"] for link in referral.chain] == [held, str(child)]
        with requests_sent(dynamodb_client) as sent:
            own = store.longest_match(ipaddress.ip_network(held).broadcast_address)
        assert sent == ["BatchGetItem"]
        assert (own.role, str(own.delegation.prefix)) == (Role.HELD, held)


# A new report is 7 requests: the report, the case, the contribution's window, its count, the case's list,
# `counted`, and the count's guard. A crash before any of the last six leaves the report stored.
@pytest.mark.parametrize("crash_at", range(1, 7))
def test_a_report_cut_short_by_a_crash_is_counted_once_by_its_retry(dynamodb_client, crash_at):
    """The retry that finishes the counting is the report's arrival (the first attempt was never answered):
    new, so intake queues the case's policy run; a later re-send is a duplicate. A crash at the last request,
    after the report was marked counted, left only a tidy-up: its retry is a duplicate."""
    _, _, reports, _ = make_dynamodb_stores(dynamodb_client)
    with pytest.raises(Crash), requests_sent(dynamodb_client, crash_at):
        reports.record_reports([record("r1")], DAY)
    retried = Outcome.DUPLICATE if crash_at == 6 else Outcome.NEW
    assert reports.record_reports([record("r1")], DAY) == [(retried, '{"report_id": "r1"}')]
    assert reports.record_reports([record("r1")], DAY) == [(Outcome.DUPLICATE, '{"report_id": "r1"}')]
    case = reports.get_case("127.0.0.5", "spam")
    assert (case.reports, case.contributions[0].reports, case.contributions[0].counted_at) == (1, 1, NOW)
    assert [r.report_id for r in reports.case_reports("127.0.0.5", "spam")] == ["r1"]
    reports.record_reports([record("r2")], DAY)
    assert reports.get_case("127.0.0.5", "spam").contributions[0].reports == 2


# Recording a verdict is 7 requests here: the result, the claim of the case's judging window, the case's
# reporters, the reputation's read and write, the case, `applied`. A crash before the case leaves the
# reputation scaled once and the case to be moved.
def test_a_verification_cut_short_moves_its_case_when_read_and_scales_reputation_once(dynamodb_client):
    _, _, reports, verifications = make_dynamodb_stores(dynamodb_client)
    reports.record_reports([record()], DAY)
    reports.await_verification("127.0.0.5", "spam", "v1", NOW)
    with pytest.raises(Crash), requests_sent(dynamodb_client, crash_at=5):
        verifications.record_verification("v1", "127.0.0.5", "spam", "confirmed", {"verdict": "confirmed"}, 1.25, NOW)
    assert verifications.verification("v1")["verdict"] == "confirmed"
    assert not verifications.record_verification("v1", "127.0.0.5", "spam", "confirmed", {}, 1.25, NOW)
    case = reports.get_case("127.0.0.5", "spam")
    assert (case.status, case.verification, case.contributions[0].reputation) == (
        "confirmed", {"verdict": "confirmed"}, 1.25)


def test_two_verifications_of_one_case_at_once_judge_each_claim_once(dynamodb_client):
    """v2 runs whole while v1, having read the case's reporters, is about to scale them: without v1's claim on
    the judging window, both would find the claim unjudged and scale it (1.25 x 0.5 = 0.625)."""
    _, _, reports, verifications = make_dynamodb_stores(dynamodb_client)
    reports.record_reports([record(at=NOW - timedelta(hours=1))], DAY)
    meanwhile = []

    def second_verification(model, **_):
        if model.name == "GetItem" and not meanwhile:  # v1's first read of a reporter's reputation
            meanwhile.append("v2")
            verifications.record_verification("v2", "127.0.0.5", "spam", "refuted", {}, 0.5, NOW + timedelta(seconds=1))
    dynamodb_client.meta.events.register(EVERY_CALL, second_verification)
    try:
        verifications.record_verification("v1", "127.0.0.5", "spam", "confirmed", {}, 1.25, NOW)
    finally:
        dynamodb_client.meta.events.unregister(EVERY_CALL, second_verification)
    assert meanwhile == ["v2"]
    assert reports.get_case("127.0.0.5", "spam").contributions[0].reputation in (1.25, 0.5)


def test_a_list_of_cases_reads_at_most_its_bound_and_leaves_out_the_case_it_cut(dynamodb_client, monkeypatch):
    """Cases sort by address, so the newest are found by reading their partition: never more than
    CASE_LIST_MAX_ITEMS items, and a case whose contributions the cut may have split is not shown."""
    monkeypatch.setattr(dynamodb_reports, "CASE_LIST_MAX_ITEMS", 5)
    _, _, reports, _ = make_dynamodb_stores(dynamodb_client)
    reports.record_reports([record(f"r{n}", ip=f"127.0.0.{n}", at=NOW + timedelta(minutes=n)) for n in range(1, 5)],
                           DAY)  # four cases, each followed by its one contribution: eight items
    read: list[int] = []

    def count(parsed, **_):
        read.append(parsed["ScannedCount"])

    dynamodb_client.meta.events.register("after-call.dynamodb.Query", count)
    try:
        listed = reports.list_cases(limit=1)
    finally:
        dynamodb_client.meta.events.unregister("after-call.dynamodb.Query", count)
    assert sum(read) == 5
    assert [(case.ip, case.reports) for case in listed] == [("127.0.0.2", 1)]


def test_a_batch_writes_several_cases_at_once_and_each_case_in_its_order(dynamodb_client):
    """A batch of 1,000 reports is some 7,000 requests: one after another they would outlast API Gateway's
    29 s. Different cases go to different writers; one case's reports keep their order."""
    import threading

    _, _, reports, _ = make_dynamodb_stores(dynamodb_client)
    writers: set[int] = set()

    def note_writer(**_):
        writers.add(threading.get_ident())

    dynamodb_client.meta.events.register(EVERY_CALL, note_writer)
    try:
        batch = [record(f"r{n}", ip=f"127.0.{n}.5") for n in range(40)]
        batch += [record("late", ip="127.0.0.5", at=NOW + timedelta(hours=1)), record("r0")]   # r0 again: a repeat
        outcomes = reports.record_reports(batch, DAY)
    finally:
        dynamodb_client.meta.events.unregister(EVERY_CALL, note_writer)
    assert len(writers) > 1
    assert [o for o, _ in outcomes] == [Outcome.NEW] * 41 + [Outcome.DUPLICATE]
    contribution = reports.get_case("127.0.0.5", "spam").contributions[0]
    assert (contribution.reports, contribution.counted_at) == (2, NOW)   # "r0" first, then "late" in its window


def test_one_grant_at_a_time_across_processes_and_a_dead_holders_lease_runs_out(dynamodb_client, monkeypatch):
    """Two Lambdas granting overlapping space at once must not both pass the overlap check: the second waits
    for the first's lease; a lease whose holder died frees itself."""
    import threading
    import time

    from chalicelib.adapters import dynamodb_store

    first, _, _, _ = make_dynamodb_stores(dynamodb_client)
    second = dynamodb_store.DynamoDBDelegationStore(dynamodb_client, first.table.name)   # another process
    order, inside = [], threading.Event()

    def hold():
        with first.granting():
            order.append("first in")
            inside.set()
            time.sleep(0.3)
            order.append("first out")

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(5)
    with second.granting():
        order.append("second in")
    holder.join()
    assert order == ["first in", "first out", "second in"]

    monkeypatch.setattr(dynamodb_store, "GRANT_LEASE_SECONDS", 0.2)
    dead = first.granting()
    dead.__enter__()   # and never leaves: the process died holding the lease
    started = time.monotonic()
    with second.granting():
        assert time.monotonic() - started >= 0.15
