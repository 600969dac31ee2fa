"""The one table of abuse categories: CLI flag, RSIT class, X-ARF v4 category/type, AbuseIPDB ids.

Sources:
- RSIT, the Reference Security Incident Taxonomy (ENISA / TF-CSIRT):
  https://github.com/enisaeu/Reference-Security-Incident-Taxonomy-Task-Force (machine-readable as
  the MISP taxonomy `rsit`). `rsit` below is `<taxonomy>/<type>` with values from that list.
- X-ARF v4 JSON schemas, https://github.com/xarf/xarf-spec `schemas/v4` at v4.2.0: the category and
  type pairs that `xarf-v4-master.json` accepts.
- AbuseIPDB report categories 1-23, https://www.abuseipdb.com/categories

Order matters: `from_abuseipdb_ids` picks the first row that any id maps to, so a narrower row
comes before the broader one it refines (SSH before brute force, SQL injection before web attack)
and `infected`, which AbuseIPDB uses alongside other categories, comes last.

Each AbuseIPDB id maps to one row at most. Where AbuseIPDB's own categories overlap:
9 "Open Proxy" also covers open relays and Tor exits and maps to open-proxy; 22 "SSH" is meant to be
combined with 18 "Brute-Force" and maps to ssh-brute-force; 6 "Ping of Death" is denial of service
and maps to ddos. Left unmapped because they name a target or a circumstance, not what the source
did: 1 DNS Compromise, 2 DNS Poisoning, 13 VPN IP, 15 Hacking (too vague alone), 17 Spoofing
(spoofed sources are not reportable), 23 IoT Targeted.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

RSIT_TAG = "rsit:"  # how the RSIT classification travels among a report's tags (DESIGN.md §2)


class UnknownCategory(ValueError):
    """A slug that is not in the table."""


@dataclass(frozen=True, slots=True)
class Category:
    slug: str  # the CLI flag without dashes; also the key in policy files, URLs and cases
    title: str
    rsit: str  # "<taxonomy>/<type>"
    xarf_category: str
    xarf_type: str
    abuseipdb_ids: tuple[int, ...]
    check: str | None  # the verification check run for it, if any (port-scan only gathers evidence)
    # X-ARF's `service` field: required by vulnerability/open_service, and what tells
    # the open-* rows sharing that type apart.
    xarf_service: str | None = None

    @property
    def flag(self) -> str:
        return f"--{self.slug}"

    @property
    def rsit_tag(self) -> str:
        return RSIT_TAG + self.rsit


_TABLE = (
    Category("open-proxy", "Open proxy", "vulnerable/potentially-unwanted-accessible",
             "vulnerability", "open_service", (9,), "open-proxy", xarf_service="proxy"),
    Category("open-relay", "Open mail relay", "vulnerable/potentially-unwanted-accessible",
             "vulnerability", "open_service", (), "open-relay", xarf_service="smtp"),
    Category("open-resolver", "Open DNS resolver", "vulnerable/ddos-amplifier",
             "vulnerability", "open_service", (), "open-resolver", xarf_service="dns"),
    Category("phishing", "Phishing", "fraud/phishing", "content", "phishing", (7,), None),
    Category("fraud", "Fraud", "fraud/masquerade", "content", "fraud", (3, 8), None),
    Category("spam", "Spam", "abusive-content/spam", "messaging", "spam", (10, 11, 12), None),
    Category("ssh-brute-force", "SSH brute force", "intrusion-attempts/brute-force",
             "connection", "login_attack", (22,), None),
    Category("brute-force", "Brute-force login", "intrusion-attempts/brute-force",
             "connection", "login_attack", (5, 18), None),
    Category("sql-injection", "SQL injection", "intrusion-attempts/ids-alert",
             "connection", "sql_injection", (16,), None),
    Category("web-attack", "Web application attack", "intrusion-attempts/ids-alert",
             "connection", "vulnerability_scan", (21,), None),
    Category("ddos", "Denial of service", "availability/ddos", "connection", "ddos", (4, 6), None),
    Category("port-scan", "Port scan", "information-gathering/scanner",
             "connection", "port_scan", (14,), "port-scan"),
    Category("bad-bot", "Bad web bot", "information-gathering/scanner",
             "connection", "scraping", (19,), None),
    Category("c2", "Botnet command-and-control server", "malicious-code/c2-server",
             "reputation", "threat_intelligence", (), None),
    Category("malware-host", "Malware distribution host", "malicious-code/malware-distribution",
             "content", "malware", (), None),
    Category("infected", "Infected host", "malicious-code/infected-system",
             "infrastructure", "botnet", (20,), None),
)

CATEGORIES: Mapping[str, Category] = MappingProxyType({c.slug: c for c in _TABLE})


def by_slug(slug: str) -> Category:
    try:
        return CATEGORIES[slug]
    except (KeyError, TypeError):
        raise UnknownCategory(
            f"unknown category {slug!r}; valid categories: {', '.join(sorted(CATEGORIES))}"
        ) from None


def from_abuseipdb_ids(ids: Iterable[int]) -> Category | None:
    """The most specific row any of an AbuseIPDB report's ids maps to; None when none maps."""
    wanted = set(ids)
    return next((c for c in _TABLE if wanted.intersection(c.abuseipdb_ids)), None)


def from_xarf(category: str, type_: str, service: str | None = None) -> Category | None:
    """The row for an X-ARF category/type. Rows sharing a type with a `service` need the
    matching service; otherwise the broadest (last) row wins: a login_attack is a brute force."""
    rows = [c for c in _TABLE if (c.xarf_category, c.xarf_type) == (category, type_)]
    if any(c.xarf_service for c in rows):
        wanted = service.strip().lower() if service else None
        rows = [c for c in rows if c.xarf_service == wanted]
    return rows[-1] if rows else None
