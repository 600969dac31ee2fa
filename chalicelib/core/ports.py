"""The ports core logic needs from the outside world; adapters/ makes them real (SQLite, DynamoDB, …)."""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from typing import Any, NamedTuple, Protocol

import orjson

from ..checks.result import CheckResult
from ..protocol.delegation import Delegation, parse_delegation
from ..protocol.prefixes import IPAddress, IPNetwork


class Role(StrEnum):
    HELD = "held"        # space this node answers for, with the chain that proves it
    GRANTED = "granted"  # space this node delegated to a child


class StaleDelegation(ValueError):
    """A delegation with a lower serial than the one already stored for the same prefix."""


@dataclass(frozen=True)
class DelegationMatch:
    """A stored delegation as the longest-prefix match found it: raw JSON, parsed only when needed.

    `chain_json` is a held delegation's own chain, or for a granted one the chain of the held delegation
    above it ("[]" on a root), so a referral presents the whole chain from the trust anchor to the child.
    """

    role: Role
    document_json: str
    chain_json: str
    not_after: float  # the delegation's not_after, in epoch seconds

    @cached_property
    def delegation(self) -> Delegation:
        return parse_delegation(json.loads(self.document_json))

    @property
    def chain(self) -> list[dict]:
        """The chain from the trust anchor to this delegation inclusive."""
        return json.loads(self.chain_text)

    @property
    def chain_text(self) -> str:
        """The same chain as JSON text, spliced from the stored text: a referral is rendered unparsed."""
        if self.role is Role.HELD:
            return self.chain_json
        parent = self.chain_json.strip()
        return f"[{self.document_json}]" if parent == "[]" else f"{parent[:-1]},{self.document_json}]"

    def expired(self, now: datetime) -> bool:
        """Past its not_after: the refer route and intake ask it of every address they answer for, so the
        stores hand the time over as a number rather than as the document to parse."""
        return self.not_after < now.timestamp()

    @cached_property
    def fields(self) -> dict:
        """The signed delegation's fields, without validating them (the document was checked when stored);
        parsed with orjson, as every referral needs three of them."""
        return orjson.loads(self.document_json)["delegation"]


class DelegationStore(Protocol):
    def save_delegations(self, role: Role, delegations: Iterable[Delegation],
                         chains: Sequence[Sequence[dict]] | None = None) -> None:
        """Insert or replace by (role, prefix); a held delegation comes with its chain."""

    def remove_delegation(self, role: Role, prefix: IPNetwork) -> bool: ...

    def list_delegations(self, role: Role | None = None) -> list[DelegationMatch]: ...

    def longest_match(self, ip: IPAddress) -> DelegationMatch | None:
        """The most specific held or granted delegation covering ip, in one round trip."""

    def granting(self) -> AbstractContextManager:
        """Hold every other grant off, in any process, from a grant's overlap check to its save."""

    def overlapping_grants(self, prefix: IPNetwork) -> list[Delegation]:
        """The granted delegations whose prefix contains, equals or lies inside prefix, found by key: a grant
        costs the same however many the node has made."""

    def next_serial(self, prefix: IPNetwork) -> int: ...


class StoredToken(NamedTuple):
    """A token as stored: only its hash, so a listing can never show the token itself."""

    token_hash: str
    role: str
    label: str
    created: datetime


class TokenStore(Protocol):
    def save_token(self, token_hash: str, role: str, label: str, created: datetime) -> None: ...

    def token_role(self, token_hash: str) -> str | None: ...

    def list_tokens(self) -> list[StoredToken]:
        """Every token, in no particular order."""

    def delete_token(self, token_hash: str) -> bool:
        """True when there was such a token; from then on it is refused."""


class Clock(Protocol):
    def now(self) -> datetime: ...


class Outcome(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"   # the same report_id with the same canonical body
    CONFLICT = "conflict"     # the same report_id with a different body


@dataclass(frozen=True)
class ReportRecord:
    """A verified report as stored: once per report_id, before any side effect."""

    report_id: str
    digest: str          # sha256 of the canonical report: tells a re-send from a conflicting replay
    ip: str
    category: str
    reporter: str        # the reporter's public key
    rank: str            # what its credentials proved
    observed: datetime
    received: datetime
    envelope_json: str
    answer_json: str     # the first answer, returned again for an exact re-send


@dataclass(frozen=True)
class Contribution:
    """One reporter's standing on one case: counted at most once per window."""

    reporter: str
    rank: str
    observed: datetime
    counted_at: datetime
    reports: int
    reputation: float
    rank_override: str | None


@dataclass(frozen=True)
class Case:
    ip: str
    category: str
    status: str
    first_seen: datetime
    last_seen: datetime
    reports: int
    contributions: tuple[Contribution, ...]
    verification: dict | None = None
    awaiting: str | None = None              # the verification last requested, whose verdict may move the case
    awaiting_since: datetime | None = None   # when it was requested


class Allowance(NamedTuple):
    """What a rate window let through of the events asked for."""

    granted: int
    retry_after: int | None  # seconds until the next window, when not every event was granted


class ReportStore(Protocol):
    def record_reports(self, records: Sequence[ReportRecord], count_window_seconds: int) -> list[tuple[Outcome, str]]:
        """Store each new report and count its reporter on its case, all or nothing; per record the outcome
        and the answer to give (the first answer for a duplicate)."""

    def get_report(self, report_id: str) -> ReportRecord | None: ...

    def get_case(self, ip: str, category: str) -> Case | None: ...

    def list_cases(self, ip: str | None = None, status: str | None = None, limit: int = 500) -> list[Case]: ...

    def case_reports(self, ip: str, category: str) -> list[ReportRecord]: ...

    def set_case_status(self, ip: str, category: str, status: str, verification: dict | None = None) -> bool: ...

    def await_verification(self, ip: str, category: str, verification_id: str, now: datetime) -> bool:
        """Mark an open case `verifying` for this verification alone: only its verdict may move the case now.
        False when there is no such case or it is resolved."""

    def set_rank_override(self, reporter: str, rank: str | None) -> None: ...

    def take(self, counts: Mapping[str, int], limit: int, window_seconds: int, now: datetime) -> dict[str, Allowance]:
        """Grant, per bucket, as many of the events asked for as still fit under `limit` in its current window,
        and count only those: a batch larger than what is left gets what is left, and what was refused does
        not fill the window for later requests."""


@dataclass(frozen=True)
class Job:
    """A unit of background work; `payload` is plain JSON so SQS and the local table carry the same thing."""

    job_id: str
    kind: str            # "verify", "digest", "webhook", …
    payload: dict
    attempts: int = 0


class JobQueue(Protocol):
    def enqueue(self, kind: str, payload: dict, delay_seconds: int = 0, dedupe_key: str | None = None) -> str:
        """Queue a job (at least once); a second job with a pending dedupe_key is dropped. Returns its id."""


class LocalJobQueue(JobQueue, Protocol):
    """The durable job table a local worker drains: leases, retries with back-off, dead letters."""

    def lease(self, worker: str, limit: int, lease_seconds: int, now: datetime) -> list[Job]: ...

    def complete(self, job_id: str) -> None: ...

    def retry(self, job_id: str, error: str, now: datetime) -> None:
        """Give the job back after a failure: later, with back-off, or to the dead letters when out of tries."""

    def counts(self) -> dict[str, int]:
        """Jobs by state: pending, leased, done, dead."""

    def purge_done(self, older_than: datetime) -> int:
        """Forget jobs finished before older_than; how many."""

    def purge_expired(self, now: datetime) -> int:
        """Forget what outlived its lifetime in the storage the queue shares with the node's stores (rate
        windows, canaries, logs), as DynamoDB's TTL does on AWS; how many rows."""


@dataclass(frozen=True)
class Alert:
    """A message for the owner's operators: email subject and body, and a short form for SMS."""

    subject: str
    body: str
    short: str
    ip: str | None = None
    category: str | None = None
    kind: str = "alert"   # "alert", "ticket" or "digest"


class HeldAlert(NamedTuple):
    """An alert held for its window's digest, with the store's id for it."""

    held_id: str
    alert: Alert


class Notifier(Protocol):
    def send(self, alert: Alert) -> None: ...


@dataclass(frozen=True)
class Block:
    ip: str
    category: str
    until: datetime
    reason: str
    score: float = 0.0


class VerificationStore(Protocol):
    """What verification and its actions remember: canaries, scan claims, results, blocks, alert counts."""

    def register_canary(self, nonce: str, ip: str, expires: datetime) -> None: ...

    def record_canary_hit(self, nonce: str, peer: str, now: datetime) -> bool:
        """True when nonce was issued and is still live; the hit is then recorded."""

    def canary_hit(self, nonce: str) -> bool: ...

    def claim_scan(self, ip: str, now: datetime, cooldown_seconds: int) -> bool:
        """Atomically take the right to scan ip; False while an earlier claim is inside its cool-down."""

    def fire_threshold_once(self, ip: str, category: str) -> bool:
        """True only for the first caller per open case and episode: threshold actions run once until the
        case is resolved, and once more each time a newer report reopens it."""

    def record_verification(self, verification_id: str, ip: str, category: str, verdict: str, result: dict,
                            reputation_factor: float | None, now: datetime) -> bool:
        """Store the result, move the case, and scale its reporters' reputation, all at once and only the
        first time this verification_id is recorded (a redelivered job records nothing). The case moves only
        while it is `verifying` for this verification: resolved, reopened or verifying for a newer one, it
        stays as it is."""

    def verification(self, verification_id: str) -> dict | None:
        """The recorded result with `actions_done`, or None."""

    def mark_actions_done(self, verification_id: str) -> None: ...

    def action_done(self, action_key: str) -> bool:
        """Whether the action of a job run with this key was carried out: a redelivered job skips it."""

    def mark_action_done(self, action_key: str, now: datetime) -> None: ...

    def block(self, entry: Block) -> None:
        """Put ip on the blocklist until entry.until (a later expiry wins)."""

    def unblock(self, ip: str, category: str) -> None:
        """End the block of ip for category now, if there is one: a later block starts afresh, with its own expiry."""

    def blocklist(self, now: datetime) -> list[Block]: ...

    def count_alert(self, window_start: datetime) -> int:
        """Count one alert in the window starting at window_start; returns the count so far, this one included."""

    def hold_for_digest(self, window_start: datetime, alert: Alert) -> None: ...

    def held_for_digest(self, window_start: datetime) -> list[HeldAlert]:
        """The window's held alerts in the order they were held, each with the id `clear_digest` takes."""

    def log_delivery(self, delivery_id: str, webhook: str, url: str, status: int | None, error: str | None,
                     at: datetime) -> None:
        """Append one webhook delivery attempt to the log operators read."""

    def deliveries(self, limit: int = 100) -> list[dict]:
        """The latest delivery attempts, newest first."""

    def clear_digest(self, window_start: datetime, held_ids: Iterable[str]) -> None:
        """Forget the held alerts a digest sent, by the ids `held_for_digest` gave: an alert another worker
        held meanwhile stays for the next digest."""


class Scanner(Protocol):
    def scan(self, ip: str, checks: Sequence[str], options: Mapping[str, Mapping[str, Any]]) -> list[CheckResult]:
        """Probe ip with each named check once (`options[name]`: that check's keyword arguments); a check that
        fails is an `error` result, not an exception. Results in the order of `checks`."""


class WebhookSender(Protocol):
    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST body; the HTTP status, or an exception when the receiver could not be reached."""
