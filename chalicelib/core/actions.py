"""Policy actions (block, webhook, ticket, alert) and alert delivery that folds a storm into a digest."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from ..protocol.encoding import format_time
from .alerts import AlertThrottle, compose_alert, compose_digest, describe_action
from .node import Node
from .policy import Action
from .ports import Alert, Block

DIGEST = "digest"
WEBHOOK = "webhook"
SENT_LAST = {"ticket": 1, "alert": 2}  # after blocks and webhooks, so the messages can say what was done


def run_actions(node: Node, actions: Sequence[Action], *, run_id: str, ip: str, category: str, score: float,
                verdict: str | None, summary: str) -> list[str]:
    """Carry out a rule's actions for one run (a verification or a threshold firing), each once however often
    its job is delivered: a redelivery after a failure does only what is not yet done."""
    now = node.clock.now()
    taken = [describe_action(action) for action in actions]
    for index, action in sorted(enumerate(actions), key=lambda pair: SENT_LAST.get(pair[1].kind, 0)):
        action_key = f"{run_id}/{index}"  # also the webhook's delivery id, the same on every redelivery
        if node.verifications.action_done(action_key):
            continue
        if action.kind == "block":
            node.verifications.block(Block(ip, category, now + action.duration, f"{category} {verdict or 'reported'}",
                                           score))
        elif action.kind == "webhook":
            node.queue.enqueue(WEBHOOK, {"webhook": action.webhook, "delivery_id": action_key, "event": {
                "event": f"case.{verdict or 'threshold'}", "ip": ip, "category": category, "verdict": verdict,
                "score": round(score, 4), "summary": summary, "at": format_time(now)}}, dedupe_key=action_key)
        else:
            alert = compose_alert(ip=ip, category=category, score=score, verdict=verdict, actions=taken,
                                  node_name=node.settings.endpoint, resolve_hint=node.settings.endpoint,
                                  kind=action.kind, details=summary)
            if action.kind == "ticket":
                node.notifier.send(alert)  # never throttled: a ticket folded into a digest is never opened
            else:
                deliver_alert(node, alert)
        node.verifications.mark_action_done(action_key, now)
    return taken


def _throttle(node: Node) -> AlertThrottle:
    return AlertThrottle(node.settings.alerts_per_window, node.settings.alert_window_minutes)


def _window_start(throttle: AlertThrottle, now: datetime) -> datetime:
    seconds = throttle.window_seconds
    return datetime.fromtimestamp(int(now.timestamp()) // seconds * seconds, timezone.utc)


def deliver_alert(node: Node, alert: Alert) -> bool:
    """Send now while under the rate; beyond it, hold the alert for one digest at the window's end."""
    now = node.clock.now()
    throttle = _throttle(node)
    start = _window_start(throttle, now)
    decision = throttle.decide(node.verifications.count_alert(start) - 1, now)
    if decision.send_now:
        node.notifier.send(alert)
        return True
    node.verifications.hold_for_digest(start, alert)
    if decision.first_folded:  # one digest job per window, however many alerts it holds
        _schedule_digest(node, start, now, dedupe_key=decision.window_key)
    return False


def _schedule_digest(node: Node, start: datetime, now: datetime, dedupe_key: str | None = None) -> None:
    """Queue the digest of the window beginning at `start` for the window's end, unless that has passed."""
    delay = int((_throttle(node).decide(0, start).digest_due - now).total_seconds()) + 1
    if delay > 0:
        node.queue.enqueue(DIGEST, {"window_start": start.timestamp()}, dedupe_key=dedupe_key, delay_seconds=delay)


def send_digest(node: Node, payload: dict) -> None:
    """The digest job: one message for every alert held in its window. A queue that cannot delay a job that
    long (SQS: 15 minutes) runs it before the window ends; it then sends what is held so far and schedules
    itself again for the rest."""
    start = datetime.fromtimestamp(payload["window_start"], timezone.utc)
    held = node.verifications.held_for_digest(start)
    if held:
        node.notifier.send(compose_digest([alert for _, alert in held], node.settings.alert_window_minutes))
        node.verifications.clear_digest(start, [held_id for held_id, _ in held])
    _schedule_digest(node, start, node.clock.now())  # no dedupe key: this very job still holds the window's
