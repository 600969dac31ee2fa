"""The one entry point for background jobs, whether SQS or the local worker delivered them."""
from __future__ import annotations

from collections.abc import Callable

from . import actions, verification, webhooks
from .node import Node

HANDLERS: dict[str, Callable[[Node, dict], None]] = {
    verification.EVALUATE: verification.evaluate,
    verification.VERIFY: verification.verify,
    verification.THRESHOLD: verification.threshold_reached,
    actions.DIGEST: actions.send_digest,
    actions.WEBHOOK: webhooks.deliver,
}


def handle(node: Node, message: dict) -> None:
    """Run one job message `{"kind", "payload", "job_id"}`; raises to have it retried."""
    kind = message.get("kind")
    if kind not in HANDLERS:
        raise ValueError(f"no handler for job kind {kind!r}")
    HANDLERS[kind](node, message["payload"])
