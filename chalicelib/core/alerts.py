"""What the owner's operators read: one alert per case, or one digest when a report storm would be thousands.

Composition and throttling are pure; the notifier adapters deliver the `Alert` (email, outbox, SMS), and
the caller keeps the count of alerts sent per window through a port and passes it in.
"""
from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..protocol.categories import CATEGORIES
from .policy import Action
from .ports import Alert

TAG = "netimmune"
SMS_LIMIT = 160
DIGEST_LISTED = 20  # addresses a digest names before "and M more"

ALERTED = "operators alerted"
"""What `describe_action` says of the `alert` action; left out of subjects, where it goes without saying."""

_VERDICTS = {
    # verdict: (how the subject puts it, what it means for the operator)
    "confirmed": ("confirmed {}", "this node's own check proved it"),
    "refuted": ("{} refuted", "this node's own check found no such service"),
    "inconclusive": ("{} unverified (inconclusive)", "the check answered neither yes nor no"),
    "error": ("{} unverified (check failed)", "the check itself failed; it says nothing about the host"),
    # a threshold alert: a check may be queued or running at the same moment, and says its verdict itself
    None: ("reported {}", "the weighted reports reached the alert threshold; where the policy runs a check, "
                          "its verdict comes in a message of its own"),
}


def describe_action(action: Action) -> str:
    """A policy action as done, for the `actions` of `compose_alert`: 'blocked 7d', 'ticket opened'."""
    if action.kind == "block":
        return f"blocked {_duration(action.duration)}"
    if action.kind == "webhook":
        return f"sent to webhook {action.webhook}"
    if action.kind == "ticket":
        return "ticket opened"
    return ALERTED


def compose_alert(*, ip: str, category: str, score: float, verdict: str | None, actions: Sequence[str],
                  node_name: str, resolve_hint: str, kind: str = "alert", details: str = "") -> Alert:
    """The message about one case.

    `verdict` is the verification verdict (confirmed, refuted, inconclusive, error), None when no check
    ran; `actions` are what the policy did, as `describe_action` words them; `resolve_hint` is the node's
    API base URL, from which the body gives the exact request that resolves the case; `details` is the
    verification summary. `kind` is "alert" or "ticket" (a ticketing system reading the mailbox).
    """
    title = _category_title(category)
    said, meaning = _VERDICTS.get(verdict, ("{} " + str(verdict), "as the check reported it"))
    headline = f"{ip} {said.replace('{}', _in_sentence(title))}"
    done = [action for action in actions if action != ALERTED]
    if done:
        headline += " — " + ", ".join(done)
    case_url = f"{resolve_hint.rstrip('/')}/v1/cases/{ip}"
    lines = [
        f"netimmune node {node_name} has an abuse case about an address in its space.",
        "",
        f"Address:   {ip}",
        f"Category:  {title} ({category})",
        f"Score:     {score:.1f} (weighted reports)",
        f"Verdict:   {verdict or 'not verified'} — {meaning}",
        f"Actions:   {', '.join(actions) or 'none'}",
    ]
    if details.strip():
        lines += ["", "Verification:", *(f"  {line}" for line in details.strip().splitlines())]
    lines += [
        "",
        "Once the host is fixed, resolve the case (with a token from `netimmune token create --role reader`):",
        f'  curl -X POST -H "Authorization: Bearer $NETIMMUNE_TOKEN" {shlex.quote(f"{case_url}/{category}/resolve")}',
        "",
        f"The cases about this address and their evidence: GET {case_url}",
    ]
    return Alert(subject=_subject(kind, headline), body="\n".join(lines) + "\n",
                 short=_sms(f"{node_name}: {headline}, score {score:.1f}"), ip=ip, category=category, kind=kind)


def compose_digest(alerts: Sequence[Alert], window_minutes: int) -> Alert:
    """One message folding the alerts held back in a window: counts by category, the first addresses."""
    if not alerts:
        raise ValueError("a digest needs at least one alert")
    counts = Counter(alert.category or "other" for alert in alerts)
    by_category = ", ".join(f"{n} {_in_sentence(_category_title(slug))}" for slug, n in counts.most_common())
    summary = f"{len(alerts)} alert{'s' if len(alerts) != 1 else ''} in {window_minutes} min"
    listed = [f"  {_headline(alert)}" for alert in alerts[:DIGEST_LISTED]]
    more = len(alerts) - len(listed)
    lines = [
        f"{summary}, folded into one message so that a report storm does not flood this mailbox.",
        "",
        "By category:",
        *(f"  {n:>6}  {_category_title(slug)}" for slug, n in counts.most_common()),
        "",
        "Addresses:",
        *listed,
        *([f"  and {more} more"] if more else []),
        "",
        "Every case, its evidence and the request that resolves it: GET /v1/cases on this node.",
    ]
    return Alert(subject=_subject("digest", f"{summary}: {by_category}"), body="\n".join(lines) + "\n",
                 short=_sms(f"{TAG}: {summary} ({by_category})"), kind="digest")


@dataclass(frozen=True)
class ThrottleDecision:
    send_now: bool       # False: fold the alert into the window's digest
    first_folded: bool   # the first alert held back in this window: schedule the digest now
    window_key: str      # names the window, for the count bucket and the digest job's dedupe key
    digest_due: datetime  # the window's end, when its digest goes out


@dataclass(frozen=True)
class AlertThrottle:
    """At most `limit` alerts per fixed window of `window_minutes`; the rest fold into one digest.

    Windows are aligned to the epoch (like the store's rate windows), so every worker computes the same
    window from the clock alone. The count of alerts already sent in the window is passed in.
    """

    limit: int = 10
    window_minutes: int = 15

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window_minutes < 1:
            raise ValueError("an alert throttle needs a positive limit and window")

    @property
    def window_seconds(self) -> int:
        return self.window_minutes * 60

    def decide(self, sent_in_window: int, now: datetime) -> ThrottleDecision:
        """Whether the next alert goes now, given how many this window has already sent."""
        start = int(now.timestamp()) // self.window_seconds * self.window_seconds
        begins = datetime.fromtimestamp(start, timezone.utc)
        return ThrottleDecision(
            send_now=sent_in_window < self.limit,
            first_folded=sent_in_window == self.limit,
            window_key=f"alerts:{begins:%Y-%m-%dT%H:%MZ}/{self.window_minutes}m",
            digest_due=begins + timedelta(seconds=self.window_seconds),
        )


def _category_title(slug: str) -> str:
    category = CATEGORIES.get(slug)
    return category.title if category else slug


def _in_sentence(title: str) -> str:
    """'Open proxy' → 'open proxy' inside a sentence; an acronym such as 'SSH brute force' stays."""
    first = title.split(" ", 1)[0]
    return title if first.isupper() else title[:1].lower() + title[1:]


def _duration(duration: timedelta | None) -> str:
    if duration is None:
        return "indefinitely"
    seconds = int(duration.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds // 60}m"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _subject(kind: str, headline: str) -> str:
    tag = TAG if kind == "alert" else f"{TAG} {kind}"
    return f"[{tag}] {_one_line(headline)}"


def _headline(alert: Alert) -> str:
    """An alert's subject without its tag, for a line in a digest."""
    return alert.subject.split("] ", 1)[-1]


def _sms(text: str) -> str:
    text = _one_line(text)
    return text if len(text) <= SMS_LIMIT else text[:SMS_LIMIT - 1] + "…"
