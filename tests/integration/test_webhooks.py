"""Webhooks: signed, delivered from the queue with back-off, logged; a flaky receiver gets the event once."""
from __future__ import annotations

import dataclasses
import json
import logging
import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from chalicelib.adapters.http_webhooks import HttpWebhookSender
from chalicelib.core import jobs
from chalicelib.core.actions import run_actions
from chalicelib.core.policy import Action, parse_policy
from chalicelib.core.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from chalicelib.protocol.keys import KeyPair
from chalicelib.settings import Settings
from chalicelib.wiring import build_node
from tests.conftest import FixedClock


class FlakyReceiver(BaseHTTPRequestHandler):
    """Fails the first `failures` requests with 500, then accepts; keeps every request it saw."""

    failures = 2
    seen: list[tuple[dict, bytes, int]] = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = 500 if len(self.seen) < self.failures else 204
        self.seen.append((dict(self.headers), body, status))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    FlakyReceiver.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


@pytest.fixture
def node(tmp_path, receiver):
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"webhooks:\n  noc:\n    url: {receiver}\n    secret_env: NOC_SECRET\n")
    KeyPair.generate().save(tmp_path / "n.key")
    built = build_node(Settings(db_path=tmp_path / "n.db", dev_mode=True, policy_path=policy), clock=FixedClock())
    return dataclasses.replace(built, webhook_sender=HttpWebhookSender(timeout=5),
                               webhook_secrets={"noc": "s3cret"})


def drain(node, rounds=10):
    """Lease and run due jobs, giving failures back to the queue as the worker does; the clock jumps ahead."""
    for _ in range(rounds):
        for job in node.queue.lease("test", 10, 60, node.clock.now()):
            try:
                jobs.handle(node, {"kind": job.kind, "payload": job.payload, "job_id": job.job_id})
                node.queue.complete(job.job_id)
            except Exception as exc:  # as the worker does: back to the queue with back-off
                node.queue.retry(job.job_id, str(exc), node.clock.now())
        node.clock.moment += timedelta(minutes=5)


def test_a_receiver_that_fails_twice_gets_the_event_once_with_a_valid_signature(node):
    run_actions(node, [Action("webhook", webhook="noc")], run_id="v1", ip="127.0.0.5", category="open-proxy",
                score=3.0, verdict="confirmed", summary="canary fetched")
    drain(node)
    statuses = [status for _, _, status in FlakyReceiver.seen]
    assert statuses == [500, 500, 204]
    headers, body, _ = FlakyReceiver.seen[-1]
    assert verify_signature("s3cret", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    event = json.loads(body)
    assert (event["event"], event["ip"], event["category"], event["node"]) == (
        "case.confirmed", "127.0.0.5", "open-proxy", node.key.public)
    assert len({h["X-Netimmune-Delivery"] for h, _, _ in FlakyReceiver.seen}) == 1   # the same delivery, retried
    assert node.queue.counts()["done"] == 1
    log = node.verifications.deliveries()
    assert [(entry["status"], entry["error"]) for entry in reversed(log)] == [(500, "HTTP 500"), (500, "HTTP 500"),
                                                                             (204, None)]


def test_a_run_repeated_after_a_crash_before_its_record_keeps_the_delivery_id(node, monkeypatch):
    """The worker died after queueing the webhook but before recording the action as done."""
    def killed(*args):
        raise OSError("worker killed")

    def run():
        run_actions(node, [Action("webhook", webhook="noc")], run_id="v1", ip="127.0.0.5", category="spam",
                    score=1.0, verdict="confirmed", summary="")

    with monkeypatch.context() as patch:
        patch.setattr(node.verifications, "mark_action_done", killed)
        with pytest.raises(OSError):
            run()
    run()   # the job's redelivery
    drain(node)
    assert len({headers["X-Netimmune-Delivery"] for headers, _, _ in FlakyReceiver.seen}) == 1


def test_a_wrong_secret_does_not_verify(node):
    run_actions(node, [Action("webhook", webhook="noc")], run_id="t1", ip="127.0.0.5", category="spam",
                score=1.0, verdict=None, summary="")
    FlakyReceiver.failures = 0
    try:
        drain(node, rounds=1)
    finally:
        FlakyReceiver.failures = 2
    headers, body, _ = FlakyReceiver.seen[-1]
    assert not verify_signature("guess", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])


def test_a_missing_secret_is_logged_and_retried_not_sent_unsigned(node):
    unsigned = dataclasses.replace(node, webhook_secrets={})
    run_actions(unsigned, [Action("webhook", webhook="noc")], run_id="t1", ip="127.0.0.5", category="spam",
                score=1.0, verdict=None, summary="")
    drain(unsigned, rounds=1)
    assert FlakyReceiver.seen == []
    assert "NOC_SECRET is not set" in unsigned.verifications.deliveries()[0]["error"]


def test_webhook_names_must_exist_in_the_policy():
    with pytest.raises(ValueError, match="not defined|unknown webhook"):
        parse_policy("rules:\n  - prefix: 127.0.0.0/8\n    on_confirmed: [webhook: nope]\n")


def test_the_wiring_reads_each_webhook_secret_from_the_variable_the_policy_names_and_warns_of_unset_ones(
        tmp_path, receiver, monkeypatch, caplog):
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"webhooks:\n  noc:\n    url: {receiver}\n    secret_env: NOC_SECRET\n"
                      f"  soc:\n    url: {receiver}\n    secret_env: SOC_SECRET\n")
    monkeypatch.setenv("NOC_SECRET", "from-the-environment")
    monkeypatch.delenv("SOC_SECRET", raising=False)
    KeyPair.generate().save(tmp_path / "w.key")
    with caplog.at_level(logging.WARNING, logger="netimmune.wiring"):
        node = build_node(Settings(db_path=tmp_path / "w.db", dev_mode=True, policy_path=policy))
    assert node.webhook_secrets == {"noc": "from-the-environment"}
    assert isinstance(node.webhook_sender, HttpWebhookSender)
    assert [r.getMessage() for r in caplog.records if r.name == "netimmune.wiring"] == [
        "webhook soc: its secret variable SOC_SECRET is not set, so every delivery to it will fail"]


def test_a_receiver_answering_a_byte_at_a_time_is_cut_off_at_the_timeout():
    """httpx's timeouts bound each read: a receiver trickling its answer faster than that must still not hold
    the worker past the sender's timeout."""
    listener = socket.create_server(("127.0.0.1", 0))

    def trickle():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            try:
                for byte in b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n":
                    conn.sendall(bytes([byte]))
                    time.sleep(0.1)
            except OSError:
                pass   # the sender hung up

    threading.Thread(target=trickle, daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(httpx.TimeoutException):
            HttpWebhookSender(timeout=0.5).post(f"http://127.0.0.1:{listener.getsockname()[1]}/hook", b"{}", {})
    finally:
        listener.close()
    assert time.monotonic() - started < 2
