"""The ReportStore contract: exactly-once reports, one contribution per reporter per window, rate windows."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from chalicelib.core.ports import Allowance, Outcome, ReportRecord
from tests.conftest import NOW

DAY = 24 * 3600


def record(report_id="r1", ip="127.0.0.5", category="spam", reporter="ed25519:a", digest="d1", at=NOW,
           rank="anonymous"):
    return ReportRecord(report_id, digest, ip, category, reporter, rank, at, at, '{"report": {}}',
                        f'{{"report_id": "{report_id}"}}')


def test_a_new_report_is_stored_and_opens_a_case(report_store):
    assert report_store.record_reports([record()], DAY) == [(Outcome.NEW, '{"report_id": "r1"}')]
    stored = report_store.get_report("r1")
    assert (stored.ip, stored.category, stored.reporter, stored.observed) == ("127.0.0.5", "spam", "ed25519:a", NOW)
    case = report_store.get_case("127.0.0.5", "spam")
    assert (case.status, case.reports, len(case.contributions)) == ("received", 1, 1)
    assert case.contributions[0].reputation == 1.0 and case.contributions[0].rank_override is None


def test_the_same_report_again_is_a_duplicate_with_the_first_answer(report_store):
    report_store.record_reports([record()], DAY)
    assert report_store.record_reports([record()], DAY) == [(Outcome.DUPLICATE, '{"report_id": "r1"}')]
    assert report_store.get_case("127.0.0.5", "spam").reports == 1


def test_the_same_id_with_another_body_is_a_conflict_and_changes_nothing(report_store):
    report_store.record_reports([record()], DAY)
    outcome, _ = report_store.record_reports([record(digest="other", ip="127.0.0.6")], DAY)[0]
    assert outcome is Outcome.CONFLICT
    assert report_store.get_case("127.0.0.6", "spam") is None


def test_a_batch_reports_each_outcome_in_order(report_store):
    outcomes = report_store.record_reports([record("a"), record("b"), record("a")], DAY)
    assert [o for o, _ in outcomes] == [Outcome.NEW, Outcome.NEW, Outcome.DUPLICATE]


def test_a_reporter_is_counted_once_per_window(report_store):
    report_store.record_reports([record("a"), record("b", at=NOW + timedelta(hours=1))], DAY)
    contribution = report_store.get_case("127.0.0.5", "spam").contributions[0]
    assert (contribution.reports, contribution.counted_at, contribution.observed) == (2, NOW, NOW)
    report_store.record_reports([record("c", at=NOW + timedelta(hours=25))], DAY)
    contribution = report_store.get_case("127.0.0.5", "spam").contributions[0]
    assert (contribution.reports, contribution.counted_at) == (3, NOW + timedelta(hours=25))


def test_distinct_reporters_each_contribute(report_store):
    report_store.record_reports([record("a"), record("b", reporter="ed25519:b", rank="noc")], DAY)
    ranks = sorted(c.rank for c in report_store.get_case("127.0.0.5", "spam").contributions)
    assert ranks == ["anonymous", "noc"]


def test_cases_list_by_address_and_status_and_show_their_reports(report_store):
    report_store.record_reports([record("a"), record("b", ip="127.0.0.6"), record("c", category="ddos")], DAY)
    assert {c.category for c in report_store.list_cases(ip="127.0.0.5")} == {"spam", "ddos"}
    assert report_store.set_case_status("127.0.0.6", "spam", "confirmed", {"verdict": "confirmed"})
    confirmed = report_store.list_cases(status="confirmed")
    assert [(c.ip, c.verification) for c in confirmed] == [("127.0.0.6", {"verdict": "confirmed"})]
    assert [r.report_id for r in report_store.case_reports("127.0.0.5", "spam")] == ["a"]
    assert not report_store.set_case_status("127.0.0.9", "spam", "confirmed")


def test_a_new_report_reopens_a_resolved_case(report_store):
    report_store.record_reports([record("a")], DAY)
    report_store.set_case_status("127.0.0.5", "spam", "resolved")
    report_store.record_reports([record("b", reporter="ed25519:b", at=NOW + timedelta(hours=2))], DAY)
    assert report_store.get_case("127.0.0.5", "spam").status == "received"


def test_a_rank_override_shows_on_every_contribution(report_store):
    report_store.record_reports([record()], DAY)
    report_store.set_rank_override("ed25519:a", "muted")
    assert report_store.get_case("127.0.0.5", "spam").contributions[0].rank_override == "muted"


def test_rate_windows_grant_what_fits_and_count_only_that(report_store):
    assert report_store.take({"key:a": 3}, 5, 60, NOW) == {"key:a": Allowance(3, None)}
    answer = report_store.take({"key:a": 4, "key:b": 1}, 5, 60, NOW)
    assert answer["key:b"] == Allowance(1, None)
    assert answer["key:a"].granted == 2 and 1 <= answer["key:a"].retry_after <= 61
    # the two refused were not counted: the window is full, not over, and the next one starts empty
    assert report_store.take({"key:a": 1}, 5, 60, NOW)["key:a"].granted == 0
    assert report_store.take({"key:b": 4}, 5, 60, NOW) == {"key:b": Allowance(4, None)}
    assert report_store.take({"key:a": 5}, 5, 60, NOW + timedelta(seconds=60)) == {"key:a": Allowance(5, None)}


def test_a_clock_stepping_back_does_not_reopen_a_full_window(report_store):
    """A request stamped in the window before the stored one (a clock stepped back) must not start the stored
    window afresh: the next request in it is still refused."""
    assert NOW.timestamp() % 60 == 0
    assert report_store.take({"key:a": 5}, 5, 60, NOW)["key:a"].granted == 5
    report_store.take({"key:a": 1}, 5, 60, NOW - timedelta(seconds=1))
    assert report_store.take({"key:a": 5}, 5, 60, NOW + timedelta(seconds=2))["key:a"].granted == 0


def test_a_restarted_contribution_keeps_the_newest_observation(report_store):
    """A report a window later about something seen long before counts again, but must not age the reporter's
    contribution; a newer observation still moves it forward."""
    report_store.record_reports([record("a")], DAY)
    late_about_old = replace(record("b", at=NOW + timedelta(hours=25)), observed=NOW - timedelta(days=55))
    report_store.record_reports([late_about_old], DAY)
    contribution = report_store.get_case("127.0.0.5", "spam").contributions[0]
    assert (contribution.reports, contribution.counted_at, contribution.observed) == (
        2, NOW + timedelta(hours=25), NOW)
    report_store.record_reports([record("c", at=NOW + timedelta(hours=50))], DAY)
    assert report_store.get_case("127.0.0.5", "spam").contributions[0].observed == NOW + timedelta(hours=50)


def test_cases_list_newest_first_up_to_the_limit(report_store):
    report_store.record_reports([record(f"r{n}", ip=f"127.0.0.{n}", at=NOW + timedelta(minutes=n % 3))
                                 for n in range(1, 4)], DAY)
    assert [c.ip for c in report_store.list_cases(limit=2)] == ["127.0.0.2", "127.0.0.1"]


def test_a_case_with_more_reporters_than_a_listing_reads_is_still_found_whole(report_store, monkeypatch):
    """DynamoDB lists all cases from at most CASE_LIST_MAX_ITEMS items (20,000); one address's cases are read
    whole, or a flood of reporter keys would hide a case from policy, operators and resolving."""
    from chalicelib.adapters import dynamodb_reports

    monkeypatch.setattr(dynamodb_reports, "CASE_LIST_MAX_ITEMS", 4)
    report_store.record_reports([record(f"r{n}", reporter=f"ed25519:k{n}") for n in range(6)], DAY)
    assert report_store.get_case("127.0.0.5", "spam").reports == 6
    assert [len(c.contributions) for c in report_store.list_cases(ip="127.0.0.5")] == [6]
