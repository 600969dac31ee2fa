"""What a check returns: a verdict, one line for people, and the transcript kept as evidence."""
from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum

TRANSCRIPT_LIMIT = 64 * 1024  # characters kept per result; the rest is cut with a marker line
LINE_LIMIT = 1024
TRUNCATED = "[transcript truncated]"


class Verdict(StrEnum):
    CONFIRMED = "confirmed"        # positive proof, e.g. the canary was fetched through the suspect
    REFUTED = "refuted"            # the target was asked and did not act as the suspected service
    INCONCLUSIVE = "inconclusive"  # what the target did (or its silence) proves neither way
    ERROR = "error"                # the check itself failed; says nothing about the target


def bound_transcript(lines: tuple[str, ...] | list[str], limit: int = TRANSCRIPT_LIMIT) -> tuple[str, ...]:
    """Cut each line to LINE_LIMIT and the whole to `limit` characters, so evidence never grows unbounded."""
    kept: list[str] = []
    used = len(TRUNCATED) + 1  # room kept for the marker
    for line in lines:
        line = line if len(line) <= LINE_LIMIT else line[:LINE_LIMIT - 1] + "…"
        if used + len(line) + 1 > limit:
            kept.append(TRUNCATED)
            break
        kept.append(line)
        used += len(line) + 1
    return tuple(kept)


@dataclass(frozen=True)
class CheckResult:
    check: str    # "open-proxy" | "open-relay" | "open-resolver" | "port-scan"
    target: str   # the ip address probed
    verdict: Verdict
    summary: str  # one line a person reads
    transcript: tuple[str, ...] = ()
    details: Mapping = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "transcript", bound_transcript(tuple(self.transcript)))
        object.__setattr__(self, "details", dict(self.details))

    def to_json(self) -> dict:
        return {"check": self.check, "target": self.target, "verdict": str(self.verdict),
                "summary": self.summary, "transcript": list(self.transcript), "details": dict(self.details)}


def endpoint(ip: str, port: int) -> str:
    """`ip:port`, with brackets around IPv6 as in a URL."""
    return f"[{ip}]:{port}" if ipaddress.ip_address(ip).version == 6 else f"{ip}:{port}"


def render(data: bytes) -> list[str]:
    """Bytes as transcript text: printable ASCII line by line, anything else as hex."""
    if all(32 <= b < 127 or b in b"\r\n\t" for b in data):
        return [line for line in data.decode("ascii").split("\r\n") if line] or [""]
    return [data.hex(" ")]


class Transcript:
    """Timestamped lines of what one probe sent (`>`), received (`<`) and concluded (`#`)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.lines: list[str] = []

    def _add(self, mark: str, text: str) -> None:
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.lines.append(f"{stamp} {self.where} {mark} {text}")

    def sent(self, data: bytes | str) -> None:
        for line in render(data) if isinstance(data, bytes) else [data]:
            self._add(">", line)

    def received(self, data: bytes | str) -> None:
        for line in render(data) if isinstance(data, bytes) else [data]:
            self._add("<", line)

    def note(self, text: str) -> None:
        self._add("#", text)
