"""Verification state in DynamoDB: canaries, scan claims, results with their effects, blocks, alert counts.

Items with a lifetime (canaries, scan claims, blocks, alert windows, digests, done actions) set the
table's TTL attribute `expires_at`, but DynamoDB deletes them late, so every read that cares compares
the item's own time instead.

`record_verification` has no transaction either. It puts the verification item on condition that the
id is new (that alone makes a redelivered job record nothing), then scales the reporters' reputation,
then moves the case and marks the item `applied`. Moving the case is idempotent: if a crash cut the
effects short, `verification()` finds the item without `applied`, moves the case and marks it, so the
job's redelivery converges. Reputation is not replayed: it changes at most once per verification,
and a crash can leave some reporters unscaled rather than scale anyone twice.

A verdict judges only the claims made since the case's last one: the case keeps `judged_at`, the time
of the last confirmed or refuted verification, and only contributions counted after it are scaled (all
of them the first time). A verdict claims its window first, moving `judged_at` forward to its own time
and reading the value it replaced, then scales the claims counted after that value: two verifications
of one case at once judge disjoint claims, and one older than the case's latest judges none. A crash
between the claim and the scaling leaves those reporters unscaled, never scaled twice.

Reputation is multiplicative and clamped to [floor, ceiling] at each step, so it depends on the order
of outcomes and cannot be recomputed from counts: each change is a read, then a write on condition
that the value is still the one read, again until no other writer came between.
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime

from ..core.ports import Alert, Block, HeldAlert
from .dynamodb_reports import CASES, case_key, reporter_key
from .dynamodb_table import DynamoDBTable, epoch, moment

CANARY_KEPT_SECONDS = 24 * 3600      # a hit stays readable this long after the canary stops taking hits
ALERT_WINDOW_KEPT_SECONDS = 7 * 24 * 3600
BLOCKS = "BLOCKS"
DELIVERIES = "WEBHOOK_DELIVERIES"
DELIVERY_LOG_KEPT_SECONDS = 30 * 24 * 3600
ACTION_KEPT_SECONDS = 14 * 24 * 3600  # SQS keeps a message at most 14 days, so no redelivery comes later


def _window(window_start: datetime) -> str:
    return repr(epoch(window_start))


def _block_key(ip: str, category: str) -> tuple[str, str]:
    return BLOCKS, f"{ip}#{category}"


class DynamoDBVerificationStore:
    def __init__(self, client, table_name: str, reputation_floor: float = 0.05, reputation_ceiling: float = 2.0):
        self.table = DynamoDBTable(client, table_name)
        self.floor, self.ceiling = reputation_floor, reputation_ceiling

    # -- canaries and scan claims ----------------------------------------------------------------
    def register_canary(self, nonce: str, ip: str, expires: datetime) -> None:
        self.table.put({"pk": f"CANARY#{nonce}", "sk": "CANARY", "ip": ip, "expires": epoch(expires),
                        "expires_at": int(epoch(expires)) + CANARY_KEPT_SECONDS})

    def record_canary_hit(self, nonce: str, peer: str, now: datetime) -> bool:
        return self.table.update(
            f"CANARY#{nonce}", "CANARY",
            "SET #hit_at = if_not_exists(#hit_at, :now), #hit_from = if_not_exists(#hit_from, :peer)",
            "attribute_exists(#pk) AND #expires >= :now", {"now": epoch(now), "peer": peer}) is not None

    def canary_hit(self, nonce: str) -> bool:
        item = self.table.get(f"CANARY#{nonce}", "CANARY")
        return bool(item and "hit_at" in item)

    def claim_scan(self, ip: str, now: datetime, cooldown_seconds: int) -> bool:
        at = epoch(now)
        return self.table.update(
            f"SCAN#{ip}", "SCAN", "SET #claimed_at = :at, #expires_at = :end",
            "attribute_not_exists(#claimed_at) OR #claimed_at <= :cutoff",
            {"at": at, "end": int(at) + cooldown_seconds, "cutoff": at - cooldown_seconds}) is not None

    def fire_threshold_once(self, ip: str, category: str) -> bool:
        """Only on an open case; resolving it removes `threshold_fired`, so it fires again once reopened."""
        return self.table.update(*case_key(ip, category), "SET #threshold_fired = :yes",
                                 "attribute_exists(#status) AND attribute_not_exists(#resolved_at) AND "
                                 "attribute_not_exists(#threshold_fired)", {"yes": True}) is not None

    # -- results ---------------------------------------------------------------------------------
    def record_verification(self, verification_id: str, ip: str, category: str, verdict: str, result: dict,
                            reputation_factor: float | None, now: datetime) -> bool:
        item = {"pk": f"VERIFICATION#{verification_id}", "sk": "VERIFICATION", "ip": ip, "category": category,
                "verdict": verdict, "result": json.dumps(result), "recorded": epoch(now), "actions_done": False}
        if not self.table.put(item, "attribute_not_exists(#pk)"):
            return False
        if reputation_factor is not None:
            claimed = self.table.update(
                *case_key(ip, category), "SET #judged_at = :at",
                "attribute_exists(#status) AND (attribute_not_exists(#judged_at) OR #judged_at < :at)",
                {"at": item["recorded"]}, returns="UPDATED_OLD")
            if claimed is not None:  # None: a later verdict already judged this case's claims
                column = "confirmed" if reputation_factor >= 1 else "refuted"
                judged_before = claimed.get("judged_at")
                for contribution in self.table.query(CASES, f"{ip}#{category}#"):  # the case and its contributions
                    reporter = contribution["sk"].split("#", 2)[2]
                    if reporter and (judged_before is None or contribution["counted_at"] > judged_before):
                        self._scale_reputation(reporter, reputation_factor, column)
        self._apply(item)
        return True

    def _apply(self, item: dict) -> None:
        """Move the case to the verdict if it is still verifying for this verification, then mark the verification
        applied: idempotent, and a late redelivery never undoes a newer verdict or a resolution."""
        verdict = item["verdict"]
        self.table.update(*case_key(item["ip"], item["category"]), "SET #status = :status, #verification = :result",
                          "#status = :verifying AND attribute_not_exists(#resolved_at) AND "
                          "(attribute_not_exists(#awaiting) OR #awaiting = :id)",
                          {"status": verdict if verdict in ("confirmed", "refuted") else "inconclusive",
                           "result": item["result"], "verifying": "verifying",
                           "id": item["pk"].removeprefix("VERIFICATION#")})
        self.table.update(item["pk"], item["sk"], "SET #applied = :yes", values={"yes": True})

    def _scale_reputation(self, reporter: str, factor: float, column: str) -> None:
        while True:  # each failed condition means another writer succeeded, so this ends
            item = self.table.get(*reporter_key(reporter)) or {}
            old = item.get("reputation")
            new = min(self.ceiling, max(self.floor, float(1.0 if old is None else old) * factor))
            condition, values = ("attribute_not_exists(#reputation)", {}) if old is None else \
                ("#reputation = :old", {"old": old})
            if self.table.update(*reporter_key(reporter), f"SET #reputation = :new ADD #{column} :one", condition,
                                 {**values, "new": new, "one": 1}) is not None:
                return

    def verification(self, verification_id: str) -> dict | None:
        item = self.table.get(f"VERIFICATION#{verification_id}", "VERIFICATION")
        if item is None:
            return None
        if not item.get("applied"):
            self._apply(item)
        return {"verdict": item["verdict"], "result": json.loads(item["result"]), "actions_done": item["actions_done"]}

    def mark_actions_done(self, verification_id: str) -> None:
        self.table.update(f"VERIFICATION#{verification_id}", "VERIFICATION", "SET #actions_done = :yes",
                          "attribute_exists(#pk)", {"yes": True})

    def action_done(self, action_key: str) -> bool:
        return self.table.get(f"ACTION#{action_key}", "ACTION") is not None

    def mark_action_done(self, action_key: str, now: datetime) -> None:
        self.table.put({"pk": f"ACTION#{action_key}", "sk": "ACTION", "done_at": epoch(now),
                        "expires_at": int(epoch(now)) + ACTION_KEPT_SECONDS})

    # -- blocklist -------------------------------------------------------------------------------
    def block(self, entry: Block) -> None:
        """A later expiry wins; reason and score are always the latest."""
        key, until = _block_key(entry.ip, entry.category), epoch(entry.until)
        details = {"reason": entry.reason, "score": float(entry.score)}
        if self.table.update(
                *key, "SET #ip = :ip, #category = :category, #until = :until, #expires_at = :end, "
                "#reason = :reason, #score = :score", "attribute_not_exists(#until) OR #until < :until",
                {"ip": entry.ip, "category": entry.category, "until": until, "end": int(until) + 1,
                 **details}) is None:
            self.table.update(*key, "SET #reason = :reason, #score = :score", values=details)

    def unblock(self, ip: str, category: str) -> None:
        self.table.delete(*_block_key(ip, category))

    def blocklist(self, now: datetime) -> list[Block]:
        cutoff = epoch(now)
        return sorted((Block(item["ip"], item["category"], moment(item["until"]), item["reason"],
                             float(item["score"]))
                       for item in self.table.query(BLOCKS) if item["until"] > cutoff),
                      key=lambda b: (b.ip, b.category))

    # -- alert throttling ------------------------------------------------------------------------
    def count_alert(self, window_start: datetime) -> int:
        return self.table.update(f"ALERTS#{_window(window_start)}", "COUNT", "ADD #count :one SET #expires_at = :end",
                                 values={"one": 1, "end": int(epoch(window_start)) + ALERT_WINDOW_KEPT_SECONDS},
                                 returns="UPDATED_NEW")["count"]

    def hold_for_digest(self, window_start: datetime, alert: Alert) -> None:
        """Sorted by when it was held (this process's clock), then made unique."""
        self.table.put({"pk": f"DIGEST#{_window(window_start)}", "sk": f"{time.time_ns():020d}#{uuid.uuid4().hex}",
                        "alert": json.dumps(asdict(alert)),
                        "expires_at": int(epoch(window_start)) + ALERT_WINDOW_KEPT_SECONDS})

    def held_for_digest(self, window_start: datetime) -> list[HeldAlert]:
        return [HeldAlert(item["sk"], Alert(**json.loads(item["alert"])))
                for item in self.table.query(f"DIGEST#{_window(window_start)}")]

    def clear_digest(self, window_start: datetime, held_ids: Iterable[str]) -> None:
        self.table.batch_delete((f"DIGEST#{_window(window_start)}", held_id) for held_id in held_ids)

    # -- webhook delivery log --------------------------------------------------------------------
    def log_delivery(self, delivery_id: str, webhook: str, url: str, status: int | None, error: str | None,
                     at: datetime) -> None:
        """One item per attempt, sorted by time; kept for DELIVERY_LOG_KEPT_SECONDS."""
        outcome = {name: value for name, value in (("status", status), ("error", error)) if value is not None}
        self.table.put({"pk": DELIVERIES, "sk": f"{time.time_ns():020d}#{uuid.uuid4().hex}",
                        "delivery_id": delivery_id, "webhook": webhook, "url": url, "at": epoch(at),
                        "expires_at": int(epoch(at)) + DELIVERY_LOG_KEPT_SECONDS, **outcome})

    def deliveries(self, limit: int = 100) -> list[dict]:
        return [{"delivery_id": item["delivery_id"], "webhook": item["webhook"], "url": item["url"],
                 "status": None if item.get("status") is None else int(item["status"]), "error": item.get("error"),
                 "at": moment(item["at"])}
                for item in self.table.query(DELIVERIES, limit=limit, descending=True)]
