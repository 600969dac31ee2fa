"""The category table against the published vocabularies it maps between."""
from __future__ import annotations

import dataclasses
import re

import pytest

from chalicelib.protocol.categories import (
    CATEGORIES,
    Category,
    UnknownCategory,
    by_slug,
    from_abuseipdb_ids,
    from_xarf,
)

# RSIT classes and types, from the MISP `rsit` taxonomy (machinetag.json) and the ENISA working copy.
RSIT = {
    "abusive-content": {"spam", "harmful-speech", "violence"},
    "malicious-code": {"infected-system", "c2-server", "malware-distribution",
                       "malware-configuration", "malware-dga-domain"},
    "information-gathering": {"scanner", "sniffing", "social-engineering"},
    "intrusion-attempts": {"ids-alert", "brute-force", "exploit"},
    "intrusions": {"privileged-account-compromise", "unprivileged-account-compromise",
                   "application-compromise", "burglary"},
    "availability": {"dos", "ddos", "misconfiguration", "sabotage", "outage"},
    "information-content-security": {"unauthorised-information-access",
                                     "unauthorised-information-modification", "data-loss"},
    "fraud": {"unauthorized-use-of-resources", "copyright", "masquerade", "phishing"},
    "vulnerable": {"weak-crypto", "ddos-amplifier", "potentially-unwanted-accessible",
                   "information-disclosure", "vulnerable-system", "other"},
    "other": {"other"},
    "test": {"test"},
}

# The category/type pairs xarf-v4-master.json (xarf-spec v4.2.0) accepts.
XARF_V4 = {
    "messaging": {"spam", "bulk_messaging"},
    "connection": {"login_attack", "port_scan", "ddos", "infected_host", "reconnaissance",
                   "scraping", "sql_injection", "vulnerability_scan"},
    "vulnerability": {"cve", "open_service", "misconfiguration"},
    "reputation": {"blocklist", "threat_intelligence"},
    "infrastructure": {"botnet", "compromised_server"},
    "content": {"phishing", "malware", "csam", "csem", "exposed_data", "brand_infringement",
                "fraud", "remote_compromise", "suspicious_registration"},
    "copyright": {"copyright", "p2p", "cyberlocker", "ugc_platform", "link_site", "usenet"},
}

ALL = list(CATEGORIES.values())


@pytest.mark.parametrize("category", ALL, ids=lambda c: c.slug)
def test_every_slug_round_trips_through_its_flag(category: Category) -> None:
    """The CLI flag, the policy key and the URL segment are one name."""
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", category.slug)
    assert category.flag == f"--{category.slug}"
    assert by_slug(category.flag.removeprefix("--")) is category


@pytest.mark.parametrize("category", ALL, ids=lambda c: c.slug)
def test_rsit_tag_names_an_official_rsit_class_and_type(category: Category) -> None:
    """Receivers filter on the RSIT tag, so it must use RSIT's own words."""
    match = re.fullmatch(r"rsit:([a-z0-9-]+)/([a-z0-9-]+)", category.rsit_tag)
    assert match, category.rsit_tag
    taxonomy, type_ = match.groups()
    assert type_ in RSIT[taxonomy]


@pytest.mark.parametrize("category", ALL, ids=lambda c: c.slug)
def test_xarf_category_and_type_are_a_pair_the_v4_schema_accepts(category: Category) -> None:
    """A report body is forwarded to X-ARF consumers unchanged, so its category/type must validate."""
    assert category.xarf_type in XARF_V4[category.xarf_category]
    if category.xarf_type == "open_service":
        assert category.xarf_service, "the open_service schema requires `service`"


def test_each_abuseipdb_id_maps_to_at_most_one_category() -> None:
    """A bulk import must not depend on which of two rows happens to be found first."""
    owners: dict[int, list[str]] = {}
    for category in ALL:
        for abuseipdb_id in category.abuseipdb_ids:
            owners.setdefault(abuseipdb_id, []).append(category.slug)
    assert {i: s for i, s in owners.items() if len(s) > 1} == {}


def test_abuseipdb_ids_left_unmapped_are_exactly_the_documented_ones() -> None:
    """Every id in 1..23 is either mapped or deliberately left out (target or circumstance, not behaviour)."""
    mapped = {i for category in ALL for i in category.abuseipdb_ids}
    assert mapped <= set(range(1, 24))
    assert set(range(1, 24)) - mapped == {1, 2, 13, 15, 17, 23}


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ([18, 22], "ssh-brute-force"),
        ([22, 18], "ssh-brute-force"),
        ([5, 18], "brute-force"),
        ([16, 21], "sql-injection"),
        ([15, 21], "web-attack"),
        ([7, 11], "phishing"),
        ([4, 20], "ddos"),
        ([20], "infected"),
        ([14, 15], "port-scan"),
    ],
)
def test_from_abuseipdb_ids_picks_the_most_specific_category(ids: list[int], expected: str) -> None:
    """AbuseIPDB reports combine a broad id with a narrow one; the narrow one names the case."""
    assert from_abuseipdb_ids(ids) is by_slug(expected)


@pytest.mark.parametrize("category", [c for c in ALL if c.abuseipdb_ids], ids=lambda c: c.slug)
def test_a_category_own_abuseipdb_ids_import_as_that_category(category: Category) -> None:
    assert from_abuseipdb_ids(category.abuseipdb_ids) is category


@pytest.mark.parametrize("ids", [[], [13, 23], [1, 2, 17], [99]])
def test_from_abuseipdb_ids_is_none_when_nothing_maps(ids: list[int]) -> None:
    assert from_abuseipdb_ids(ids) is None


@pytest.mark.parametrize("category", ALL, ids=lambda c: c.slug)
def test_from_xarf_returns_a_category_with_the_same_xarf_type_and_rsit(category: Category) -> None:
    """Importing what we export keeps the classification (SSH brute force widens to brute force)."""
    imported = from_xarf(category.xarf_category, category.xarf_type, category.xarf_service)
    assert imported is not None
    assert (imported.xarf_category, imported.xarf_type, imported.rsit) == (
        category.xarf_category, category.xarf_type, category.rsit)


@pytest.mark.parametrize(
    ("service", "expected"),
    [("proxy", "open-proxy"), ("smtp", "open-relay"), ("DNS", "open-resolver"), (" dns ", "open-resolver")],
)
def test_open_service_reports_are_told_apart_by_their_service(service: str, expected: str) -> None:
    assert from_xarf("vulnerability", "open_service", service) is by_slug(expected)


@pytest.mark.parametrize("service", [None, "", "rdp", "ntp"])
def test_open_service_without_a_known_service_maps_to_nothing(service: str | None) -> None:
    """An open RDP or NTP server is none of our open-* categories; guessing would verify the wrong thing."""
    assert from_xarf("vulnerability", "open_service", service) is None


def test_login_attack_imports_as_the_broad_brute_force_category() -> None:
    assert from_xarf("connection", "login_attack") is by_slug("brute-force")


@pytest.mark.parametrize(("category", "type_"), [("copyright", "p2p"), ("connection", "open_service"), ("", "")])
def test_from_xarf_is_none_for_pairs_outside_the_table(category: str, type_: str) -> None:
    assert from_xarf(category, type_) is None


@pytest.mark.parametrize("slug", ["open_proxy", "--open-proxy", "Open-Proxy", ""])
def test_unknown_slug_error_lists_every_valid_slug(slug: str) -> None:
    with pytest.raises(UnknownCategory) as raised:
        by_slug(slug)
    assert isinstance(raised.value, ValueError)
    assert all(valid in str(raised.value) for valid in CATEGORIES)


def test_checks_are_the_known_probes_and_open_services_are_confirmed_by_their_namesake() -> None:
    """A row naming a check no probe implements would queue jobs nothing can run."""
    assert {c.check for c in ALL} <= {"open-proxy", "open-relay", "open-resolver", "port-scan", None}
    for slug in ("open-proxy", "open-relay", "open-resolver"):
        assert by_slug(slug).check == slug


def test_table_and_rows_are_read_only() -> None:
    """Nothing at runtime may add or alter a category behind the table's back."""
    with pytest.raises(TypeError):
        CATEGORIES["new"] = ALL[0]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ALL[0].slug = "changed"  # type: ignore[misc]
