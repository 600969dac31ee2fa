"""The VerificationStore contract: canaries, scan claims, once-only results and their effects, blocks."""
from __future__ import annotations

from datetime import timedelta

from chalicelib.core.ports import Alert, Block
from tests.conftest import NOW
from tests.contract.test_report_store import DAY, record


def test_a_canary_counts_only_while_live_and_only_if_issued(verification_store):
    verification_store.register_canary("n1", "127.0.0.5", NOW + timedelta(minutes=10))
    assert not verification_store.canary_hit("n1")
    assert not verification_store.record_canary_hit("unknown", "127.0.0.5", NOW)
    assert verification_store.record_canary_hit("n1", "127.0.0.5", NOW)
    assert verification_store.canary_hit("n1")
    verification_store.register_canary("n2", "127.0.0.5", NOW)
    assert not verification_store.record_canary_hit("n2", "127.0.0.5", NOW + timedelta(seconds=1))


def test_a_scan_claim_holds_for_its_cool_down(verification_store):
    assert verification_store.claim_scan("127.0.0.5", NOW, 600)
    assert not verification_store.claim_scan("127.0.0.5", NOW + timedelta(seconds=599), 600)
    assert verification_store.claim_scan("127.0.0.6", NOW, 600)
    assert verification_store.claim_scan("127.0.0.5", NOW + timedelta(seconds=600), 600)


def test_threshold_fires_once_per_case(stores):
    reports, verification = stores
    reports.record_reports([record()], DAY)
    assert verification.fire_threshold_once("127.0.0.5", "spam")
    assert not verification.fire_threshold_once("127.0.0.5", "spam")


def test_threshold_fires_again_once_a_resolved_case_is_reopened(stores):
    reports, verification = stores
    reports.record_reports([record()], DAY)
    assert verification.fire_threshold_once("127.0.0.5", "spam")
    reports.set_case_status("127.0.0.5", "spam", "resolved")
    assert not verification.fire_threshold_once("127.0.0.5", "spam")   # nothing fires on a resolved case
    reports.record_reports([record("r2", at=NOW + timedelta(days=30))], DAY)
    assert verification.fire_threshold_once("127.0.0.5", "spam")
    assert not verification.fire_threshold_once("127.0.0.5", "spam")


def test_an_action_is_done_once_marked(verification_store):
    assert not verification_store.action_done("v1/0")
    verification_store.mark_action_done("v1/0", NOW)
    verification_store.mark_action_done("v1/0", NOW)
    assert verification_store.action_done("v1/0") and not verification_store.action_done("v1/1")


def test_a_verification_is_recorded_once_with_its_effects(stores):
    reports, verification = stores
    reports.record_reports([record("a"), record("b", reporter="ed25519:b")], DAY)
    assert reports.await_verification("127.0.0.5", "spam", "v1", NOW)
    result = {"verdict": "refuted", "summary": "nothing open"}
    assert verification.record_verification("v1", "127.0.0.5", "spam", "refuted", result, 0.5, NOW)
    assert not verification.record_verification("v1", "127.0.0.5", "spam", "refuted", result, 0.5, NOW)
    case = reports.get_case("127.0.0.5", "spam")
    assert case.status == "refuted" and case.verification == result
    assert [c.reputation for c in case.contributions] == [0.5, 0.5]
    assert verification.verification("v1") == {"verdict": "refuted", "result": result, "actions_done": False}
    verification.mark_actions_done("v1")
    assert verification.verification("v1")["actions_done"]
    assert verification.verification("v2") is None


def test_reputation_stays_within_its_floor_and_ceiling(stores):
    reports, verification = stores
    for verdict, factor, bound in (("confirmed", 1.25, 2.0), ("refuted", 0.5, 0.05)):
        for index in range(20):   # a new claim each time, each on a case of its own
            reports.record_reports([record(f"{verdict}{index}", ip=f"127.0.{index}.5", category=verdict)], DAY)
            verification.record_verification(f"{verdict}{index}", f"127.0.{index}.5", verdict, verdict, {}, factor,
                                             NOW)
        assert reports.get_case("127.0.0.5", verdict).contributions[0].reputation == bound


def reputations(reports, ip="127.0.0.5", category="spam") -> dict[str, float]:
    return {c.reporter: c.reputation for c in reports.get_case(ip, category).contributions}


def test_a_verdict_judges_only_the_claims_counted_since_the_last_verdict_on_the_case(stores):
    reports, verification = stores
    reports.record_reports([record("a1")], DAY)
    verification.record_verification("v1", "127.0.0.5", "spam", "refuted", {}, 0.5, NOW + timedelta(minutes=1))
    assert reputations(reports) == {"ed25519:a": 0.5}
    reports.record_reports([record("b1", reporter="ed25519:b", at=NOW + timedelta(hours=2)),
                            record("a2", at=NOW + timedelta(hours=3))], DAY)   # a's window is still open
    verification.record_verification("v2", "127.0.0.5", "spam", "refuted", {}, 0.5, NOW + timedelta(hours=4))
    assert reputations(reports) == {"ed25519:a": 0.5, "ed25519:b": 0.5}
    reports.record_reports([record("a3", at=NOW + timedelta(hours=25))], DAY)   # a new window: a claims again
    verification.record_verification("v3", "127.0.0.5", "spam", "confirmed", {}, 1.25, NOW + timedelta(hours=26))
    assert reputations(reports) == {"ed25519:a": 0.625, "ed25519:b": 0.5}


def test_a_verdict_that_judges_no_one_leaves_the_claims_to_the_next_verdict(stores):
    reports, verification = stores
    reports.record_reports([record("a1")], DAY)
    verification.record_verification("v1", "127.0.0.5", "spam", "error", {}, None, NOW + timedelta(minutes=1))
    reports.record_reports([record("b1", reporter="ed25519:b", at=NOW + timedelta(hours=1))], DAY)
    verification.record_verification("v2", "127.0.0.5", "spam", "refuted", {}, 0.5, NOW + timedelta(hours=2))
    assert reputations(reports) == {"ed25519:a": 0.5, "ed25519:b": 0.5}


def test_a_verdict_on_a_resolved_case_still_judges_its_claims_once(stores):
    reports, verification = stores
    reports.record_reports([record("a1")], DAY)
    reports.set_case_status("127.0.0.5", "spam", "resolved")
    verification.record_verification("v1", "127.0.0.5", "spam", "refuted", {}, 0.5, NOW + timedelta(minutes=1))
    verification.record_verification("v2", "127.0.0.5", "spam", "refuted", {}, 0.5, NOW + timedelta(minutes=2))
    assert reputations(reports) == {"ed25519:a": 0.5}


def test_an_error_verdict_leaves_the_case_inconclusive_and_reputation_alone(stores):
    reports, verification = stores
    reports.record_reports([record()], DAY)
    reports.await_verification("127.0.0.5", "spam", "v1", NOW)
    verification.record_verification("v1", "127.0.0.5", "spam", "error", {"verdict": "error"}, None, NOW)
    case = reports.get_case("127.0.0.5", "spam")
    assert case.status == "inconclusive" and case.contributions[0].reputation == 1.0


def test_a_resolved_case_keeps_its_status_when_a_late_result_arrives(stores):
    reports, verification = stores
    reports.record_reports([record()], DAY)
    reports.await_verification("127.0.0.5", "spam", "v1", NOW)
    reports.set_case_status("127.0.0.5", "spam", "resolved")
    verification.record_verification("v1", "127.0.0.5", "spam", "confirmed", {}, 1.25, NOW)
    assert reports.get_case("127.0.0.5", "spam").status == "resolved"


def test_a_case_resolved_and_reopened_meanwhile_is_not_moved_by_the_old_verdict(stores):
    reports, verification = stores
    reports.record_reports([record()], DAY)
    reports.await_verification("127.0.0.5", "spam", "v1", NOW)
    reports.set_case_status("127.0.0.5", "spam", "resolved")
    reports.record_reports([record("r2", at=NOW + timedelta(minutes=5))], DAY)   # reopens it
    verification.record_verification("v1", "127.0.0.5", "spam", "confirmed", {}, 1.25, NOW + timedelta(minutes=9))
    case = reports.get_case("127.0.0.5", "spam")
    assert (case.status, case.verification) == ("received", None)


def test_only_the_verification_a_case_awaits_moves_it(stores):
    """v1 was given up as overdue and v2 requested: v1's late verdict changes nothing, v2's moves the case."""
    reports, verification = stores
    reports.record_reports([record()], DAY)
    reports.await_verification("127.0.0.5", "spam", "v1", NOW)
    reports.await_verification("127.0.0.5", "spam", "v2", NOW + timedelta(hours=3))
    verification.record_verification("v2", "127.0.0.5", "spam", "refuted", {"verdict": "refuted"}, 0.5,
                                      NOW + timedelta(hours=3, minutes=1))
    verification.record_verification("v1", "127.0.0.5", "spam", "confirmed", {"verdict": "confirmed"}, 1.25,
                                      NOW + timedelta(hours=3, minutes=2))
    case = reports.get_case("127.0.0.5", "spam")
    assert (case.status, case.verification) == ("refuted", {"verdict": "refuted"})
    assert verification.verification("v1")["verdict"] == "confirmed"   # kept for the record all the same


def test_a_case_awaits_the_verification_last_requested(stores):
    reports, verification = stores
    reports.record_reports([record()], DAY)
    assert (reports.get_case("127.0.0.5", "spam").awaiting, reports.get_case("127.0.0.5", "spam").awaiting_since) \
        == (None, None)
    assert reports.await_verification("127.0.0.5", "spam", "v1", NOW)
    assert reports.await_verification("127.0.0.5", "spam", "v2", NOW + timedelta(hours=1))
    case = reports.get_case("127.0.0.5", "spam")
    assert (case.status, case.awaiting, case.awaiting_since) == ("verifying", "v2", NOW + timedelta(hours=1))
    assert not reports.await_verification("127.0.0.6", "spam", "v3", NOW)   # no such case
    reports.set_case_status("127.0.0.5", "spam", "resolved")
    assert not reports.await_verification("127.0.0.5", "spam", "v3", NOW)
    assert reports.get_case("127.0.0.5", "spam").status == "resolved"


def test_blocks_expire_and_a_later_expiry_wins(verification_store):
    verification_store.block(Block("127.0.0.5", "spam", NOW + timedelta(days=1), "spam confirmed", 3.0))
    verification_store.block(Block("127.0.0.5", "spam", NOW + timedelta(hours=1), "spam confirmed", 4.0))
    verification_store.block(Block("127.0.0.6", "ddos", NOW + timedelta(hours=1), "ddos confirmed", 1.0))
    listed = verification_store.blocklist(NOW)
    assert [(b.ip, b.until) for b in listed] == [("127.0.0.5", NOW + timedelta(days=1)),
                                                 ("127.0.0.6", NOW + timedelta(hours=1))]
    assert [b.ip for b in verification_store.blocklist(NOW + timedelta(hours=2))] == ["127.0.0.5"]


def test_unblocking_lifts_one_address_and_category_and_a_later_block_starts_afresh(verification_store):
    verification_store.block(Block("127.0.0.5", "spam", NOW + timedelta(days=7), "spam confirmed", 3.0))
    verification_store.block(Block("127.0.0.5", "ddos", NOW + timedelta(days=7), "ddos confirmed", 1.0))
    verification_store.unblock("127.0.0.5", "spam")
    verification_store.unblock("127.0.0.6", "spam")   # nothing to lift
    assert [(b.ip, b.category) for b in verification_store.blocklist(NOW)] == [("127.0.0.5", "ddos")]
    verification_store.block(Block("127.0.0.5", "spam", NOW + timedelta(hours=1), "spam confirmed", 4.0))
    assert [(b.category, b.until) for b in verification_store.blocklist(NOW)] == [
        ("ddos", NOW + timedelta(days=7)), ("spam", NOW + timedelta(hours=1))]   # not the lifted block's expiry


def test_alert_counts_and_digests_are_per_window(verification_store):
    assert [verification_store.count_alert(NOW) for _ in range(3)] == [1, 2, 3]
    assert verification_store.count_alert(NOW + timedelta(minutes=15)) == 1
    alert = Alert("subject", "body", "short", "127.0.0.5", "spam")
    verification_store.hold_for_digest(NOW, alert)
    verification_store.hold_for_digest(NOW, alert)
    held = verification_store.held_for_digest(NOW)
    assert [entry.alert for entry in held] == [alert, alert]
    assert verification_store.held_for_digest(NOW + timedelta(minutes=15)) == []
    verification_store.clear_digest(NOW, [entry.held_id for entry in held])
    assert verification_store.held_for_digest(NOW) == []


def test_clearing_a_digest_keeps_an_alert_held_after_it_was_read(verification_store):
    sent = Alert("sent", "body", "short", "127.0.0.5", "spam")
    late = Alert("held while the digest went out", "body", "short", "127.0.0.6", "spam")
    verification_store.hold_for_digest(NOW, sent)
    held = verification_store.held_for_digest(NOW)
    verification_store.hold_for_digest(NOW, late)
    verification_store.clear_digest(NOW, [entry.held_id for entry in held])
    assert [entry.alert for entry in verification_store.held_for_digest(NOW)] == [late]


def test_webhook_deliveries_are_logged_newest_first(verification_store):
    verification_store.log_delivery("d1", "noc", "http://127.0.0.1:9/hook", None, "ConnectError: refused", NOW)
    verification_store.log_delivery("d1", "noc", "http://127.0.0.1:9/hook", 500, "HTTP 500", NOW + timedelta(minutes=1))
    verification_store.log_delivery("d1", "noc", "http://127.0.0.1:9/hook", 204, None, NOW + timedelta(minutes=5))
    log = verification_store.deliveries()
    assert [(e["status"], e["error"], e["at"]) for e in log] == [
        (204, None, NOW + timedelta(minutes=5)), (500, "HTTP 500", NOW + timedelta(minutes=1)),
        (None, "ConnectError: refused", NOW)]
    assert [e["status"] for e in verification_store.deliveries(limit=1)] == [204]
