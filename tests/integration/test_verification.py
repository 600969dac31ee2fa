"""Verification through the real pipeline: intake → policy → queue → verify job → verdict and actions."""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from email import message_from_bytes, policy as email_policy

import pytest

from chalicelib.checks.result import CheckResult, Verdict
from chalicelib.core import cases, intake, jobs
from chalicelib.core.actions import deliver_alert
from chalicelib.core.alerts import compose_alert
from chalicelib.core.delegations import install
from chalicelib.core.ports import Role
from chalicelib.core.verification import scope_refusal
from chalicelib.protocol.categories import by_slug
from chalicelib.protocol.encoding import format_time
from chalicelib.protocol.keys import KeyPair
from chalicelib.protocol.prefixes import parse_ip
from chalicelib.protocol.report import build_report, sign_envelope
from chalicelib.settings import Settings
from chalicelib.wiring import build_node
from tests.conftest import NOW, FixedClock, delegate

POLICY = """\
rules:
  - prefix: 127.0.0.0/16
    categories: [port-scan]
    verify_at: 1
    alert_at: 3
    checks: [port-scan]
    on_confirmed: [block: 1d, alert]
    on_refuted: none
    on_threshold: [alert]
"""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def make_node(tmp_path, root_key):
    def make(name="node", dev_mode=True, policy=POLICY, **settings):
        (tmp_path / "policy.yaml").write_text(policy)
        KeyPair.generate().save(tmp_path / f"{name}.key")
        node = build_node(Settings(db_path=tmp_path / f"{name}.db", dev_mode=dev_mode, trust_anchor=root_key.public,
                                   policy_path=tmp_path / "policy.yaml", **settings), clock=FixedClock())
        install(node, [delegate(root_key, "127.0.0.0/16", node.key).document])
        node.delegations.save_delegations(Role.GRANTED, [delegate(node.key, "127.0.1.0/24", KeyPair.generate())])
        return node
    return make


def report(ip="127.0.0.5", category="port-scan", key=None, observed=NOW):
    body = build_report(by_slug(category), ip, {"org": "t"}, observed)
    return sign_envelope(body, key or KeyPair.generate())


def run_next_job(node) -> str | None:
    """What the worker does with one job, minus the SQS dressing (tested in test_worker.py); its kind."""
    leased = node.queue.lease("test", 1, 60, node.clock.now())
    if not leased:
        return None
    job = leased[0]
    jobs.handle(node, {"kind": job.kind, "payload": job.payload, "job_id": job.job_id})
    node.queue.complete(job.job_id)
    return job.kind


def run_due_jobs(node) -> int:
    handled = 0
    while run_next_job(node):
        handled += 1
    return handled


def job_kinds(node) -> dict[str, int]:
    rows = node.queue.db.connection.execute("SELECT kind, COUNT(*) FROM jobs GROUP BY kind")
    return dict(rows.fetchall())


def outbox_subjects(node) -> list[str]:
    return [message_from_bytes(p.read_bytes(), policy=email_policy.default)["Subject"]
            for p in sorted(node.settings.outbox_path.glob("*.eml"))]


class ScriptedScanner:
    """Answers each scan with the next verdict of its script (the last one again once it runs out)."""

    def __init__(self, *verdicts: Verdict):
        self.verdicts, self.scans = verdicts, 0

    def scan(self, ip, checks, options):
        verdict = self.verdicts[min(self.scans, len(self.verdicts) - 1)]
        self.scans += 1
        return [CheckResult(check, ip, verdict, f"scripted: {verdict.value}") for check in checks]


def scripted_node(make_node, *verdicts: Verdict, **settings):
    node = make_node(scan_cooldown_seconds=600, **settings)
    return dataclasses.replace(node, scanner=ScriptedScanner(*verdicts))


def test_scope_guard_refuses_space_outside_the_node(make_node):
    assert "outside" in scope_refusal(make_node(), parse_ip("127.9.0.1"))


def test_scope_guard_refuses_space_delegated_to_a_child(make_node):
    assert "delegated to a child" in scope_refusal(make_node(), parse_ip("127.0.1.5"))


def test_scope_guard_refuses_space_whose_delegation_expired(make_node):
    node = make_node()
    assert scope_refusal(node, parse_ip("127.0.0.5")) is None
    node.clock.moment = NOW + timedelta(days=366)   # past the held delegation's not_after
    assert "held until" in scope_refusal(node, parse_ip("127.0.0.5"))


def test_scope_guard_refuses_special_purpose_space_in_production(make_node):
    assert "special-purpose" in scope_refusal(make_node(dev_mode=False), parse_ip("127.0.0.5"))
    assert scope_refusal(make_node(name="dev"), parse_ip("127.0.0.5")) is None


def test_a_thousand_reports_about_one_address_cause_one_scan(make_node):
    node = scripted_node(make_node, Verdict.REFUTED)
    for _batch in range(4):
        answers = intake.submit(node, [report() for _ in range(250)])
        assert {a.status for a in answers} == {202}
    intake.submit(node, [report(category="open-proxy")])   # another category, same address, same cool-down
    run_due_jobs(node)
    assert job_kinds(node) == {"evaluate": 5, "verify": 1, "threshold": 1}   # one scan, one threshold alert
    assert node.scanner.scans == 1 and node.reports.get_case("127.0.0.5", "port-scan").status == "refuted"


def test_scan_runs_again_after_the_cool_down(make_node):
    node = make_node(scan_ports=(closed_port(),), scan_cooldown_seconds=600)
    intake.submit(node, [report()])
    run_due_jobs(node)
    node.reports.set_case_status("127.0.0.5", "port-scan", "received")
    node.clock.moment = NOW.replace(minute=11)
    intake.submit(node, [report()])
    run_due_jobs(node)
    assert job_kinds(node)["verify"] == 2


def test_confirmed_verdict_blocks_alerts_and_raises_reporter_reputation(make_node):
    node = scripted_node(make_node, Verdict.CONFIRMED)
    intake.submit(node, [report()])
    run_due_jobs(node)
    case = node.reports.get_case("127.0.0.5", "port-scan")
    assert case.status == "confirmed" and case.verification["checks"][0]["verdict"] == "confirmed"
    assert case.verification["checked_at"] == format_time(node.clock.now())   # RFC 3339 with Z, as DESIGN says
    assert case.contributions[0].reputation == 1.25
    assert [b.ip for b in node.verifications.blocklist(node.clock.now())] == ["127.0.0.5"]
    assert any("127.0.0.5" in s and "blocked" in s for s in outbox_subjects(node))


def test_refuted_verdict_lowers_reporter_reputation_and_blocks_nothing(make_node):
    node = scripted_node(make_node, Verdict.REFUTED)
    intake.submit(node, [report()])
    run_due_jobs(node)
    case = node.reports.get_case("127.0.0.5", "port-scan")
    assert case.status == "refuted" and case.contributions[0].reputation == 0.5
    assert node.verifications.blocklist(node.clock.now()) == []


def test_resolving_lifts_the_block_until_a_later_confirmed_verdict_blocks_again(make_node):
    node = scripted_node(make_node, Verdict.CONFIRMED)
    intake.submit(node, [report()])
    run_due_jobs(node)
    cases.resolve(node, "127.0.0.5", "port-scan")
    assert node.verifications.blocklist(node.clock.now()) == []
    node.clock.moment = NOW + timedelta(minutes=11)   # past the scan cool-down
    intake.submit(node, [report(observed=node.clock.moment)])
    run_due_jobs(node)
    assert node.scanner.scans == 2
    assert [b.ip for b in node.verifications.blocklist(node.clock.now())] == ["127.0.0.5"]


def test_a_verify_job_delivered_twice_records_and_acts_once(make_node):
    node = scripted_node(make_node, Verdict.CONFIRMED)
    intake.submit(node, [report()])
    assert run_next_job(node) == "evaluate"
    job = node.queue.lease("test", 1, 60, node.clock.now())[0]
    message = {"kind": job.kind, "payload": job.payload, "job_id": job.job_id}
    assert job.kind == "verify"
    jobs.handle(node, message)
    jobs.handle(node, message)
    assert node.reports.get_case("127.0.0.5", "port-scan").contributions[0].reputation == 1.25
    assert len([s for s in outbox_subjects(node) if "confirmed" in s]) == 1


def test_threshold_actions_fire_once_per_case(make_node):
    node = make_node(scan_ports=(closed_port(),))
    for _ in range(2):
        intake.submit(node, [report() for _ in range(3)])
        run_due_jobs(node)
    assert len([s for s in outbox_subjects(node) if "reported" in s]) == 1


def test_an_alert_storm_folds_into_one_digest(make_node):
    node = make_node(alerts_per_window=2)
    for index in range(5):
        deliver_alert(node, compose_alert(ip=f"127.0.0.{index}", category="spam", score=1, verdict=None,
                                          actions=[], node_name="n", resolve_hint="http://127.0.0.1:9"))
    assert len(outbox_subjects(node)) == 2
    assert node.queue.counts()["pending"] == 1
    node.clock.moment = NOW.replace(minute=16)
    run_due_jobs(node)
    subjects = outbox_subjects(node)
    assert len(subjects) == 3 and "3 alerts" in subjects[-1]


def test_a_storm_queues_one_digest_job_per_window_even_where_the_queue_does_not_deduplicate(make_node):
    """SQS sends every message it is given: one job per held alert made hundreds of digest jobs."""
    node = make_node(alerts_per_window=2)
    queued = []
    enqueue = node.queue.enqueue
    node.queue.enqueue = lambda kind, payload, **options: queued.append(kind) or enqueue(kind, payload, **options)
    for index in range(50):
        deliver_alert(node, compose_alert(ip=f"127.0.0.{index}", category="spam", score=1, verdict=None,
                                          actions=[], node_name="n", resolve_hint="http://127.0.0.1:9"))
    assert queued.count("digest") == 1


def test_a_digest_run_before_its_window_ends_sends_what_is_held_and_comes_back_for_the_rest(make_node):
    """A queue that cannot delay a job until the window's end (SQS: 15 minutes) runs the digest early."""
    node = make_node(alerts_per_window=1, alert_window_minutes=60)
    node.clock.moment = NOW.replace(minute=0)

    def alert(index: int) -> None:
        deliver_alert(node, compose_alert(ip=f"127.0.0.{index}", category="spam", score=1, verdict=None,
                                          actions=[], node_name="n", resolve_hint="http://127.0.0.1:9"))

    for index in range(3):
        alert(index)
    [job] = node.queue.lease("early", 1, 60, NOW + timedelta(hours=2))   # handed over as a queue capped at 15 min would
    node.clock.moment = NOW.replace(minute=15)
    jobs.handle(node, {"kind": job.kind, "payload": job.payload, "job_id": job.job_id})
    node.queue.complete(job.job_id)
    alert(3)
    node.clock.moment = NOW.replace(minute=0) + timedelta(minutes=61)
    run_due_jobs(node)
    digests = [subject for subject in outbox_subjects(node) if "digest" in subject]
    assert len(digests) == 2 and "2 alerts" in digests[0] and "1 alert" in digests[1]


def test_a_case_left_inconclusive_by_an_error_is_verified_again_when_reports_follow_the_cool_down(make_node):
    node = scripted_node(make_node, Verdict.ERROR, Verdict.REFUTED)
    intake.submit(node, [report()])
    run_due_jobs(node)
    assert node.reports.get_case("127.0.0.5", "port-scan").status == "inconclusive"
    node.clock.moment = NOW + timedelta(minutes=5)   # inside the address's cool-down: no scan
    intake.submit(node, [report(observed=node.clock.moment)])
    run_due_jobs(node)
    assert node.scanner.scans == 1 and node.reports.get_case("127.0.0.5", "port-scan").status == "inconclusive"
    node.clock.moment = NOW + timedelta(minutes=11)
    intake.submit(node, [report(observed=node.clock.moment)])
    run_due_jobs(node)
    assert node.scanner.scans == 2 and node.reports.get_case("127.0.0.5", "port-scan").status == "refuted"


def test_a_refuted_case_shows_verifying_while_new_reports_have_it_checked_again(make_node):
    node = scripted_node(make_node, Verdict.REFUTED, Verdict.CONFIRMED)
    intake.submit(node, [report()])
    run_due_jobs(node)
    node.clock.moment = NOW + timedelta(minutes=11)
    answer, = intake.submit(node, [report(observed=node.clock.moment)])
    assert run_next_job(node) == "evaluate"
    assert cases.report_status(node, answer.body["report_id"])["status"] == "verifying"
    run_due_jobs(node)
    assert node.scanner.scans == 2
    assert cases.report_status(node, answer.body["report_id"])["status"] == "confirmed"


def test_a_case_verified_again_judges_only_the_reporters_who_reported_since(make_node):
    node = scripted_node(make_node, Verdict.REFUTED, Verdict.REFUTED, Verdict.CONFIRMED)
    first, second, third = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()

    def reputations():
        contributions = node.reports.get_case("127.0.0.5", "port-scan").contributions
        return {c.reporter: c.reputation for c in contributions}

    def report_at(moment, *keys):
        node.clock.moment = moment
        intake.submit(node, [report(key=key, observed=moment) for key in keys])
        run_due_jobs(node)

    report_at(NOW, first)
    report_at(NOW + timedelta(minutes=11), second)   # refuted again: about the second reporter's claim only
    assert node.scanner.scans == 2
    assert reputations() == {first.public: 0.5, second.public: 0.5}
    report_at(NOW + timedelta(hours=25), first, third)   # the first reporter's new window: a new claim
    assert node.scanner.scans == 3 and node.reports.get_case("127.0.0.5", "port-scan").status == "confirmed"
    assert reputations() == {first.public: 0.625, second.public: 0.5, third.public: 1.25}


def test_a_case_whose_verify_job_was_lost_is_verified_again_once_the_job_is_overdue(make_node):
    node = scripted_node(make_node, Verdict.CONFIRMED)
    intake.submit(node, [report()])
    assert run_next_job(node) == "evaluate"
    for attempt in range(node.queue.max_attempts):   # each try fails, the last one to the dead letters
        lost, = node.queue.lease("test", 1, 60, NOW + timedelta(minutes=attempt))
        node.queue.retry(lost.job_id, "the scanner crashed", NOW + timedelta(minutes=attempt))
    assert [d.job.job_id for d in node.queue.dead_letters()] == [lost.job_id]

    def report_at(moment):
        node.clock.moment = moment
        intake.submit(node, [report(observed=moment)])
        run_due_jobs(node)
        return node.reports.get_case("127.0.0.5", "port-scan").status

    assert report_at(NOW + timedelta(hours=1)) == "verifying"   # past the cool-down, the job not yet overdue
    assert node.scanner.scans == 0
    assert report_at(NOW + timedelta(hours=2, minutes=1)) == "confirmed"
    assert node.scanner.scans == 1
    assert node.queue.requeue_dead(lost.job_id)   # the operator redrives the lost job: it no longer probes
    run_due_jobs(node)
    assert node.scanner.scans == 1 and job_kinds(node)["verify"] == 2


class RecordingScanner:
    """Refutes everything, keeping the options each scan was given."""

    def __init__(self):
        self.options: list[dict] = []

    def scan(self, ip, checks, options):
        self.options.append(options)
        return [CheckResult(check, ip, Verdict.REFUTED, "recorded") for check in checks]


def test_the_proxy_check_also_probes_the_ports_reporters_named_most(make_node):
    """A proxy on 3129 is on none of the usual ports: probing only those would refute it."""
    from chalicelib.checks.open_proxy import DEFAULT_PROXY_PORTS

    policy = "rules:\n  - prefix: 127.0.0.0/16\n    categories: [open-proxy]\n    verify_at: 1\n    checks: [open-proxy]\n"
    node = dataclasses.replace(make_node(policy=policy), scanner=RecordingScanner())

    def proxy_report(port):
        body = build_report(by_slug("open-proxy"), "127.0.0.5", {"org": "t"}, NOW, port=port)
        return sign_envelope(body, KeyPair.generate())

    flooder = KeyPair.generate()   # one key naming other ports many times counts as one reporter
    flood = [sign_envelope(build_report(by_slug("open-proxy"), "127.0.0.5", {"org": "f"}, NOW, port=port), flooder)
             for port in (4, 5, 6, 7) for _ in range(5)]
    intake.submit(node, [proxy_report(p) for p in (3129,) * 4 + (8118,) * 3 + (3128, 3128, 1, 2, None)] + flood)
    run_due_jobs(node)
    ports = node.scanner.options[0]["open-proxy"]["ports"]
    assert ports[:4] == (3129, 8118, 3128, 1) and 2 not in ports   # by reporters naming them (ties: lower first)
    assert ports[4:] == tuple(p for p in DEFAULT_PROXY_PORTS if p != 3128)


def test_a_confirmed_case_is_not_scanned_again(make_node):
    node = scripted_node(make_node, Verdict.CONFIRMED)
    intake.submit(node, [report()])
    run_due_jobs(node)
    node.clock.moment = NOW + timedelta(minutes=11)
    intake.submit(node, [report(observed=node.clock.moment)])
    run_due_jobs(node)
    assert node.scanner.scans == 1 and node.reports.get_case("127.0.0.5", "port-scan").status == "confirmed"


def on_threshold(actions: str) -> str:
    """A policy that verifies nothing and runs `actions` at the first report."""
    return f"rules:\n  - prefix: 127.0.0.0/16\n    alert_at: 1\n    checks: none\n    on_threshold: {actions}\n"


def test_threshold_actions_fire_again_after_the_case_is_resolved_and_reopened(make_node):
    node = make_node(policy=on_threshold("[alert]"))
    intake.submit(node, [report(category="spam")])
    run_due_jobs(node)
    cases.resolve(node, "127.0.0.5", "spam")
    node.clock.moment = NOW + timedelta(days=30)
    for _ in range(2):   # the reopened case fires once, as the first episode did
        intake.submit(node, [report(category="spam", observed=node.clock.moment)])
        run_due_jobs(node)
    assert outbox_subjects(node) == ["[netimmune] 127.0.0.5 reported spam"] * 2


def test_tickets_are_never_folded_into_a_digest(make_node):
    node = make_node(policy=on_threshold("[ticket]"), alerts_per_window=2)
    intake.submit(node, [report(ip=f"127.0.0.{host}", category="spam") for host in range(2, 8)])
    run_due_jobs(node)
    node.clock.moment = NOW + timedelta(minutes=16)   # past the alert window, when a digest would go out
    run_due_jobs(node)
    assert sorted(outbox_subjects(node)) == [f"[netimmune ticket] 127.0.0.{host} reported spam — ticket opened"
                                             for host in range(2, 8)]


class FirstTryAtEachAlertFails:
    """A notifier that fails the first try at each alert, as a flaky SMTP server does; tickets go through."""

    def __init__(self, inner):
        self.inner, self.tried = inner, set()

    def send(self, alert):
        if alert.kind == "alert" and alert.subject not in self.tried:
            self.tried.add(alert.subject)
            raise OSError("SMTP server down")
        self.inner.send(alert)


ACTING_POLICY = """\
webhooks:
  soc:
    url: http://127.0.0.1:9/hook
    secret_env: SOC_SECRET
rules:
  - prefix: 127.0.0.0/16
    verify_at: 1
    alert_at: 1
    checks: [port-scan]
    on_confirmed: [webhook: soc, ticket, alert]
    on_threshold: [webhook: soc, ticket, alert]
"""


def test_a_job_redelivered_after_a_failed_alert_repeats_none_of_the_actions_done(make_node):
    node = scripted_node(make_node, Verdict.CONFIRMED, policy=ACTING_POLICY)
    node = dataclasses.replace(node, notifier=FirstTryAtEachAlertFails(node.notifier))
    intake.submit(node, [report()])
    assert run_next_job(node) == "evaluate"
    leased = node.queue.lease("test", 2, 60, node.clock.now())
    assert sorted(job.kind for job in leased) == ["threshold", "verify"]
    for job in leased:
        message = {"kind": job.kind, "payload": job.payload, "job_id": job.job_id}
        with pytest.raises(OSError):
            jobs.handle(node, message)
        jobs.handle(node, message)   # the redelivery
    rows = node.queue.db.connection.execute("SELECT payload FROM jobs WHERE kind = 'webhook'").fetchall()
    assert len({json.loads(payload)["delivery_id"] for payload, in rows}) == len(rows) == 2
    subjects = outbox_subjects(node)
    assert len([s for s in subjects if s.startswith("[netimmune ticket]")]) == 2
    assert len([s for s in subjects if s.startswith("[netimmune]")]) == 2


def test_worker_killed_mid_verification_completes_the_job_once_after_restart(make_node):
    tarpit = socket.socket()   # accepts connections and never answers: the proxy check waits on it
    tarpit.bind(("127.0.0.5", 0))
    tarpit.listen()
    port = str(tarpit.getsockname()[1])
    node = make_node(proxy_ports=(int(port),))
    node.clock.moment = datetime.now(timezone.utc)   # the worker processes run on the real clock
    intake.submit(node, [report(category="open-proxy", observed=node.clock.moment)])
    assert run_next_job(node) == "evaluate"   # it queues the verify job, which will hang on the tarpit
    settings = node.settings
    command = [sys.executable, "-m", "chalicelib.cli.netimmune", "worker", "--db", str(settings.db_path), "--dev",
               "--anchor", settings.trust_anchor, "--policy", str(settings.policy_path)]
    env = {**os.environ, "NETIMMUNE_PROXY_PORTS": port, "NETIMMUNE_CHECK_TIMEOUT": "30"}
    first = subprocess.Popen([*command, "--lease-seconds", "2"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while node.queue.counts()["leased"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node.queue.counts()["leased"] == 1
        time.sleep(0.5)   # well inside the probe, which waits 30 s for an answer
    finally:
        first.kill()
        first.wait()
    tarpit.close()   # now the port is closed, so the retried check ends at once
    deadline = time.monotonic() + 30
    while node.queue.counts()["done"] < 2 and time.monotonic() < deadline:
        time.sleep(0.5)   # the dead worker's lease has to run out first
        restarted = subprocess.run([*command, "--once"], env=env, capture_output=True, text=True, timeout=60)
        assert restarted.returncode == 0, restarted.stderr
    assert node.queue.counts() == {"pending": 0, "leased": 0, "done": 2, "dead": 0}
    assert node.verifications.db.connection.execute("SELECT verdict FROM verifications").fetchall() == [("refuted",)]
    assert node.reports.get_case("127.0.0.5", "open-proxy").status == "refuted"
