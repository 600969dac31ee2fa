"""Alert composition and the throttle that folds a report storm into one digest (DESIGN.md §4 Alerts)."""
import shlex
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.core.alerts import (
    ALERTED, DIGEST_LISTED, SMS_LIMIT, AlertThrottle, compose_alert, compose_digest, describe_action,
)
from chalicelib.core.policy import Action
from chalicelib.protocol.categories import CATEGORIES

NODE = "https://reports.isp.example"
BLOCK_7D = Action("block", duration=timedelta(days=7))


def alert(ip="198.51.100.7", category="open-proxy", verdict="confirmed", actions=(ALERTED, "blocked 7d"), **extra):
    return compose_alert(ip=ip, category=category, score=12.34, verdict=verdict, actions=list(actions),
                         node_name="isp-a", resolve_hint=NODE, **extra)


def test_subject_names_address_verdict_category_and_action():
    assert alert().subject == "[netimmune] 198.51.100.7 confirmed open proxy — blocked 7d"


def test_subject_leaves_out_the_alert_itself_but_the_body_lists_it():
    """The message is the alert; saying so in the subject only pushes the address out of view."""
    only_alert = alert(actions=[ALERTED])
    assert only_alert.subject == "[netimmune] 198.51.100.7 confirmed open proxy"
    assert f"Actions:   {ALERTED}" in only_alert.body


@pytest.mark.parametrize("verdict, phrase", [
    ("refuted", "open proxy refuted"),
    ("inconclusive", "open proxy unverified (inconclusive)"),
    ("error", "open proxy unverified (check failed)"),
    (None, "reported open proxy"),
])
def test_subject_says_plainly_when_the_case_is_not_confirmed(verdict, phrase):
    assert alert(verdict=verdict, actions=[]).subject == f"[netimmune] 198.51.100.7 {phrase}"


def test_acronym_in_a_category_title_keeps_its_capitals():
    assert "203.0.113.9 confirmed SSH brute force" in alert(ip="203.0.113.9", category="ssh-brute-force").subject


def test_ticket_is_tagged_for_the_ticketing_system():
    assert alert(kind="ticket").subject.startswith("[netimmune ticket] ")


def test_body_gives_the_facts_an_operator_needs():
    body = alert(details="SOCKS5 on 1080 fetched the canary\nthrough 198.51.100.7").body
    for line in ("Address:   198.51.100.7", "Category:  Open proxy (open-proxy)", "Score:     12.3",
                 "Verdict:   confirmed", "Actions:   operators alerted, blocked 7d",
                 "  SOCKS5 on 1080 fetched the canary", "  through 198.51.100.7", "isp-a"):
        assert line in body


def test_body_has_the_exact_resolve_request_with_a_bearer_token():
    """Copied into a shell, the line is one curl POST to this case's resolve URL with the operator's token."""
    line = next(line for line in alert().body.splitlines() if "curl" in line)
    assert shlex.split(line) == ["curl", "-X", "POST", "-H", "Authorization: Bearer $NETIMMUNE_TOKEN",
                                 f"{NODE}/v1/cases/198.51.100.7/open-proxy/resolve"]


def test_resolve_url_does_not_double_a_trailing_slash():
    body = compose_alert(ip="2001:db8::1", category="spam", score=1, verdict=None, actions=[], node_name="n",
                         resolve_hint=NODE + "/").body
    assert f"{NODE}/v1/cases/2001:db8::1/spam/resolve" in body


def test_line_breaks_in_details_never_reach_the_subject_or_sms():
    hostile = alert(category="open-proxy\r\nBcc: victim@example.net", details="x\r\ny")
    assert "\n" not in hostile.subject and "\r" not in hostile.subject
    assert "\n" not in hostile.short


@given(ip=st.ip_addresses().map(str), category=st.sampled_from(sorted(CATEGORIES)),
       actions=st.lists(st.sampled_from([ALERTED, "blocked 3660d", "ticket opened", "sent to webhook soc-team"])),
       node_name=st.text(min_size=0, max_size=300))
def test_sms_form_fits_in_one_text_message(ip, category, actions, node_name):
    short = compose_alert(ip=ip, category=category, score=1e9, verdict="confirmed", actions=actions,
                          node_name=node_name, resolve_hint=NODE).short
    assert len(short) <= SMS_LIMIT


def test_sms_form_names_address_verdict_and_action():
    assert alert().short == "isp-a: 198.51.100.7 confirmed open proxy — blocked 7d, score 12.3"


@pytest.mark.parametrize("action, words", [
    (BLOCK_7D, "blocked 7d"),
    (Action("block", duration=timedelta(hours=36)), "blocked 36h"),
    (Action("block", duration=timedelta(minutes=90)), "blocked 90m"),
    (Action("ticket"), "ticket opened"),
    (Action("webhook", webhook="soc"), "sent to webhook soc"),
    (Action("alert"), ALERTED),
])
def test_policy_actions_are_described_as_done(action, words):
    assert describe_action(action) == words


def test_digest_counts_alerts_by_category():
    alerts = [alert(ip=f"198.51.100.{i}") for i in range(3)] + [alert(ip="203.0.113.5", category="spam")]
    digest = compose_digest(alerts, window_minutes=15)
    assert digest.kind == "digest"
    assert digest.subject == "[netimmune digest] 4 alerts in 15 min: 3 open proxy, 1 spam"
    assert "       3  Open proxy" in digest.body and "       1  Spam" in digest.body
    assert "203.0.113.5 confirmed spam — blocked 7d" in digest.body
    assert "more" not in digest.body


def test_digest_names_the_first_addresses_and_counts_the_rest():
    alerts = [alert(ip=f"198.51.{i // 256}.{i % 256}") for i in range(DIGEST_LISTED + 7)]
    digest = compose_digest(alerts, window_minutes=15)
    assert f"198.51.0.{DIGEST_LISTED - 1} confirmed" in digest.body
    assert f"198.51.0.{DIGEST_LISTED} confirmed" not in digest.body
    assert "  and 7 more" in digest.body
    assert len(digest.short) <= SMS_LIMIT


def test_digest_of_nothing_is_refused():
    with pytest.raises(ValueError):
        compose_digest([], window_minutes=15)


WINDOW_START = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def test_throttle_sends_up_to_the_limit_then_folds():
    throttle = AlertThrottle(limit=10, window_minutes=15)
    decisions = [throttle.decide(sent, WINDOW_START + timedelta(minutes=3)) for sent in range(13)]
    assert [d.send_now for d in decisions] == [True] * 10 + [False] * 3
    assert [d.first_folded for d in decisions] == [False] * 10 + [True] + [False] * 2


def test_throttle_digest_is_due_at_the_end_of_the_window():
    decision = AlertThrottle(limit=10, window_minutes=15).decide(10, WINDOW_START + timedelta(minutes=14, seconds=59))
    assert decision.digest_due == WINDOW_START + timedelta(minutes=15)
    assert decision.window_key == "alerts:2026-11-26T12:00Z/15m"


def test_throttle_windows_are_the_same_for_every_worker_and_change_at_the_boundary():
    """Windows come from the clock alone, so two workers count into the same bucket."""
    throttle = AlertThrottle(limit=10, window_minutes=15)
    keys = {throttle.decide(0, WINDOW_START + timedelta(seconds=s)).window_key for s in (0, 1, 899)}
    assert keys == {"alerts:2026-11-26T12:00Z/15m"}
    assert throttle.decide(0, WINDOW_START + timedelta(minutes=15)).window_key == "alerts:2026-11-26T12:15Z/15m"


def test_throttle_without_a_positive_rate_is_refused():
    with pytest.raises(ValueError):
        AlertThrottle(limit=0)
