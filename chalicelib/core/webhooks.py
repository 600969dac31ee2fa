"""Webhooks named in the policy: a signed JSON POST per event, delivered from the job queue.

The signature is HMAC-SHA256 over "<timestamp>.<body>" with the webhook's shared secret, sent as
`X-Netimmune-Signature: sha256=<hex>` beside `X-Netimmune-Timestamp`, so a receiver can check both
the sender and the freshness. A failed delivery raises, and the queue retries it with back-off; every
attempt is written to the delivery log an operator reads with `netimmune webhooks log`.
"""
from __future__ import annotations

import hashlib
import hmac
import json

from .node import Node

SIGNATURE_HEADER = "X-Netimmune-Signature"
TIMESTAMP_HEADER = "X-Netimmune-Timestamp"
DELIVERY_HEADER = "X-Netimmune-Delivery"


class WebhookFailed(Exception):
    """A delivery the receiver refused or never got; raising it has the queue retry the job."""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver does; shipped so receivers in Python need not write it again."""
    return hmac.compare_digest(signature(secret, timestamp, body), header)


def deliver(node: Node, payload: dict) -> None:
    """The webhook job: one signed POST, logged; raises to be retried."""
    name, delivery_id = payload["webhook"], payload["delivery_id"]
    hook = node.policy.webhooks.get(name)
    now = node.clock.now()
    if hook is None:
        node.verifications.log_delivery(delivery_id, name, "", None, "no such webhook in the policy", now)
        return
    secret = node.webhook_secrets.get(name)
    if not secret:
        error = f"the secret variable {hook.secret_env} is not set"
        node.verifications.log_delivery(delivery_id, name, hook.url, None, error, now)
        raise WebhookFailed(f"webhook {name}: {error}")
    body = json.dumps({"delivery_id": delivery_id, "node": node.key.public, **payload["event"]},
                      sort_keys=True).encode()
    timestamp = str(int(now.timestamp()))
    headers = {"Content-Type": "application/json", DELIVERY_HEADER: delivery_id, TIMESTAMP_HEADER: timestamp,
               SIGNATURE_HEADER: signature(secret, timestamp, body), "User-Agent": "netimmune-webhook/1"}
    try:
        status = node.webhook_sender.post(hook.url, body, headers)
    except Exception as exc:  # whatever the transport raised: logged, then retried by the queue
        node.verifications.log_delivery(delivery_id, name, hook.url, None, f"{type(exc).__name__}: {exc}", now)
        raise WebhookFailed(f"webhook {name} unreachable: {exc}") from None
    node.verifications.log_delivery(delivery_id, name, hook.url, status, None if 200 <= status < 300 else
                                    f"HTTP {status}", now)
    if not 200 <= status < 300:
        raise WebhookFailed(f"webhook {name} answered HTTP {status}")
