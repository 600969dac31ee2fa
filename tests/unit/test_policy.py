"""Per-prefix policy: rule selection, the shipped example, and line-precise errors (DESIGN.md §4)."""
import ipaddress
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from textwrap import dedent

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.core.policy import (
    DEFAULT_POLICY, MAX_POLICY_BYTES, Action, Policy, PolicyError, Rule, load_policy, parse_policy,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"
ALERT = Action("alert")


def parse(text: str) -> Policy:
    return parse_policy(dedent(text), source="policy.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as raised:
        parse(text)
    return [f"{p.line}:{p.column}: {p.message}" for p in raised.value.errors]


NESTED = """\
    rules:
      - prefix: 198.51.0.0/16
        verify_at: 16
      - prefix: 198.51.100.0/28
        verify_at: 28
      - prefix: 198.51.100.0/24
        verify_at: 24
      - prefix: 2001:db8::/32
        verify_at: 32
      - prefix: 2001:db8:0:1::/64
        verify_at: 64
      - prefix: 2001:db8::/48
        verify_at: 48
    """


@pytest.mark.parametrize("ip, verify_at", [
    ("198.51.100.9", 28), ("198.51.100.200", 24), ("198.51.7.1", 16), ("203.0.113.1", 1),
    ("2001:db8:0:1::9", 64), ("2001:db8::9", 48), ("2001:db8:5::1", 32), ("2001:db9::1", 1),
])
def test_longest_prefix_holding_the_address_wins(ip, verify_at):
    """Nested prefixes in any file order: the most specific one decides, IPv4 and IPv6 alike."""
    assert parse(NESTED).rule_for(ip, "spam").verify_at == verify_at


def test_ipv4_mapped_address_is_matched_by_the_ipv4_rule():
    """::ffff:a.b.c.d is the IPv4 host, so its reports meet the IPv4 rule, as in the rest of the protocol."""
    policy = parse(NESTED)
    assert policy.rule_for("::ffff:198.51.100.9", "spam").verify_at == 28
    assert policy.rule_for(ipaddress.ip_address("::ffff:198.51.100.9"), "spam").verify_at == 28


@pytest.mark.parametrize("catch_all_first", [True, False])
def test_rule_naming_the_category_beats_the_catch_all_at_equal_prefix(catch_all_first):
    catch_all = "  - prefix: 198.51.100.0/24\n    verify_at: 5\n"
    named = "  - prefix: 198.51.100.0/24\n    categories: [spam, open-relay]\n    verify_at: 9\n"
    policy = parse("rules:\n" + (catch_all + named if catch_all_first else named + catch_all))
    assert policy.rule_for("198.51.100.7", "spam").verify_at == 9
    assert policy.rule_for("198.51.100.7", "open-relay").verify_at == 9
    assert policy.rule_for("198.51.100.7", "open-proxy").verify_at == 5


def test_longer_prefix_beats_a_category_rule_on_a_shorter_one():
    """Prefix length comes first: a customer's /28 is theirs whatever the category rules above it say."""
    policy = parse("""\
        rules:
          - prefix: 198.51.100.0/24
            categories: [spam]
            verify_at: 24
          - prefix: 198.51.100.0/28
            verify_at: 28
        """)
    assert policy.rule_for("198.51.100.1", "spam").verify_at == 28


def test_category_rule_passes_other_categories_to_shorter_prefixes_and_defaults():
    policy = parse("""\
        defaults:
          verify_at: 7
        rules:
          - prefix: 198.51.100.0/24
            categories: [spam]
            verify_at: 24
          - categories: [port-scan]
            verify_at: 2
        """)
    assert policy.rule_for("198.51.100.1", "port-scan").verify_at == 2
    assert policy.rule_for("198.51.100.1", "brute-force").verify_at == 7
    assert policy.rule_for("203.0.113.1", "spam").verify_at == 7


def test_unset_settings_come_from_the_defaults_section_then_the_built_in_defaults():
    policy = parse("""\
        defaults:
          alert_at: 4
          on_refuted: [ticket]
        rules:
          - prefix: 198.51.100.0/24
            on_confirmed: [block: 12h]
        """)
    rule = policy.rule_for("198.51.100.1", "open-proxy")
    assert (rule.verify_at, rule.alert_at, rule.checks) == (1, 4, ("open-proxy",))
    assert rule.on_confirmed == (Action("block", duration=timedelta(hours=12)),)
    assert (rule.on_refuted, rule.on_threshold) == ((Action("ticket"),), (ALERT,))
    assert rule.line == 5


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "webhooks:\ndefaults:\nrules:\n"])
def test_empty_policy_is_the_built_in_default(text):
    rule = parse_policy(text).rule_for("198.51.100.1", "open-proxy")
    assert replace(rule, line=0) == DEFAULT_POLICY.rule_for("198.51.100.1", "open-proxy")


def test_default_policy_verifies_at_1_alerts_at_3_and_alerts_when_confirmed():
    rule = DEFAULT_POLICY.rule_for("2001:db8::1", "open-resolver")
    assert (rule.verify_at, rule.alert_at, rule.checks) == (1, 3, ("open-resolver",))
    assert (rule.on_confirmed, rule.on_refuted, rule.on_threshold) == ((ALERT,), (), (ALERT,))


@pytest.mark.parametrize("checks, category, expected", [
    ("category", "open-relay", ("open-relay",)),
    ("category", "spam", ()),
    ("[port-scan, category]", "open-proxy", ("port-scan", "open-proxy")),
    ("[open-proxy, category]", "open-proxy", ("open-proxy",)),
    ("none", "open-proxy", ()),
    ("[]", "open-proxy", ()),
])
def test_category_check_stands_for_the_check_that_confirms_the_reported_category(checks, category, expected):
    policy = parse(f"defaults:\n  checks: {checks}\n")
    assert policy.rule_for("198.51.100.1", category).checks == expected


@pytest.mark.parametrize("written, duration", [
    ("30m", timedelta(minutes=30)), ("12h", timedelta(hours=12)),
    ("7d", timedelta(days=7)), ("2w", timedelta(weeks=2)),
])
def test_block_durations_parse(written, duration):
    policy = parse(f"defaults:\n  on_confirmed: [block: {written}]\n")
    assert policy.rule_for("198.51.100.1", "spam").on_confirmed == (Action("block", duration=duration),)


def test_webhook_action_names_a_defined_webhook():
    policy = parse("""\
        webhooks:
          soc: {url: "https://soc.example/hook", secret_env: SOC_SECRET}
        defaults:
          on_threshold: [alert, webhook: soc]
        """)
    assert policy.webhooks["soc"].secret_env == "SOC_SECRET"
    assert policy.rule_for("198.51.100.1", "spam").on_threshold == (ALERT, Action("webhook", webhook="soc"))


BLOCK_7D = Action("block", duration=timedelta(days=7))


@pytest.mark.parametrize("ip, category, verify_at, alert_at, checks, on_confirmed, on_threshold", [
    # residential DSL: scan at the first report, block 7 days and alert when confirmed
    ("198.51.100.23", "open-proxy", 1, 3, ("open-proxy",), (ALERT, BLOCK_7D), (ALERT,)),
    ("198.51.100.23", "brute-force", 1, 3, (), (ALERT, BLOCK_7D), (ALERT,)),
    ("2001:db8:1ab::7", "open-resolver", 1, 3, ("open-resolver",), (ALERT, BLOCK_7D), (ALERT,)),
    # spam from the DSL pool: look for an open proxy and an open relay
    ("198.51.100.23", "spam", 1, 3, ("open-proxy", "open-relay"), (ALERT, BLOCK_7D), (ALERT,)),
    # business /24: no scans, alert and the customer's webhook at 5
    ("203.0.113.40", "open-proxy", 2, 5, (), (ALERT, Action("ticket")),
     (ALERT, Action("webhook", webhook="acme-noc"))),
    # everything else: the defaults
    ("192.0.2.1", "open-relay", 2, 3, ("open-relay",), (ALERT, Action("ticket")), (ALERT,)),
])
def test_shipped_example_selects_as_its_comments_say(ip, category, verify_at, alert_at, checks,
                                                       on_confirmed, on_threshold):
    rule = load_policy(EXAMPLE).rule_for(ip, category)
    assert (rule.verify_at, rule.alert_at, rule.checks) == (verify_at, alert_at, checks)
    assert (rule.on_confirmed, rule.on_refuted, rule.on_threshold) == (on_confirmed, (), on_threshold)


@pytest.mark.parametrize("text, expected", [
    ("rules:\n  - prefix: 198.51.100.0/24\n    checks: [port-scan, open-prxy]\n",
     "3:25: unknown check 'open-prxy' (known: open-proxy, open-relay, open-resolver, port-scan)"),
    ("rules:\n  - prefix: 198.51.100.7/24\n",
     "2:13: bad prefix '198.51.100.7/24': host bits set (the network is 198.51.100.0/24)"),
    ("rules:\n  - prefix: 2001:db8::1/32\n",
     "2:13: bad prefix '2001:db8::1/32': host bits set (the network is 2001:db8::/32)"),
    ("rules:\n  - prefix: 198.51.100.300/24\n",
     "2:13: bad prefix '198.51.100.300/24': not an IPv4 or IPv6 prefix"),
    ("rules:\n  - prefix: 198.51.100.7\n",
     "2:13: bad prefix '198.51.100.7': not in CIDR form (address/length)"),
    ("rules:\n  - prefix: 198.51.100.0/255.255.255.0\n",
     "2:13: bad prefix '198.51.100.0/255.255.255.0': write the length as a number of bits (/24), not a netmask "
     "or padded number"),
    ("rules:\n  - prefix: ::ffff:198.51.100.0/120\n",
     "2:13: bad prefix '::ffff:198.51.100.0/120': IPv4-mapped addresses are matched as IPv4, so this rule would "
     "never apply; write 198.51.100.0/24"),
    ("defaults:\n  on_confirmed: [alert, block: 7days]\n",
     "2:32: bad duration '7days': a whole number and a unit m, h, d or w (30m, 12h, 7d, 2w)"),
    ("defaults:\n  on_confirmed: [block: 600w]\n",
     "2:25: bad duration '600w': blocks must expire within 3660 days"),
    ("defaults:\n  on_confirmed: [block]\n", "2:18: block needs a duration, e.g. 'block: 7d'"),
    ("defaults:\n  on_refuted: [alert, blok: 7d]\n",
     "2:23: unknown action 'blok' (known: alert, block: <duration>, ticket, webhook: <name>)"),
    ("defaults:\n  on_refuted: email\n",
     "2:15: unknown action 'email' (known: alert, block: <duration>, ticket, webhook: <name>)"),
    ("defaults:\n  on_refuted: [alert: now]\n", "2:23: alert takes no argument; write just 'alert'"),
    ("defaults:\n  on_refuted:\n", "2:14: on_refuted is empty; write none or [] for no action"),
    ("defaults:\n  on_refuted: [ticket, ticket]\n",
     "2:24: action 'ticket' is listed twice in on_refuted"),
    ("defaults:\n  on_refuted: [block: 1d, block: 2d]\n",
     "2:27: on_refuted has more than one 'block' action"),
    ("rules:\n  - prefix: 198.51.100.0/24\n    verfy_at: 2\n",
     "3:5: unknown key 'verfy_at' in a rule (known: prefix, categories, verify_at, alert_at, checks, "
     "on_confirmed, on_refuted, on_threshold)"),
    ("defaults:\n  prefix: 198.51.100.0/24\n",
     "2:3: unknown key 'prefix' in defaults (known: verify_at, alert_at, checks, on_confirmed, on_refuted, "
     "on_threshold)"),
    ("rule:\n  - prefix: 198.51.100.0/24\n",
     "1:1: unknown key 'rule' in the policy (known: webhooks, defaults, rules)"),
    ("webhooks:\n  soc: {url: 'https://soc.example', secret: S}\n",
     "2:3: webhook 'soc' needs secret_env"),
    ("webhooks:\n  soc: {url: 'https://soc.example', secret: S}\n",
     "2:37: unknown key 'secret' in webhook 'soc' (known: url, secret_env)"),
    ("webhooks:\n  soc: {url: 'ftp://soc.example', secret_env: S}\n",
     "2:14: bad url 'ftp://soc.example': an http(s) URL with a host is needed"),
    ("defaults:\n  on_threshold: [webhook: noc]\n",
     "2:27: webhook 'noc' is not defined under 'webhooks:' (defined: none)"),
    ("defaults:\n  verify_at: -1\n", "2:14: verify_at must not be negative, got -1"),
    ("defaults:\n  alert_at: soon\n", "2:13: alert_at must be a number (a weighted score), got 'soon'"),
    ("defaults:\n  alert_at: .nan\n", "2:13: alert_at must be a plain decimal number such as 2 or 2.5, got '.nan'"),
    ("defaults:\n  verify_at: 1:30\n", "2:14: verify_at must be a plain decimal number such as 2 or 2.5, got '1:30'"),
    ("defaults:\n  alert_at: 010\n", "2:13: alert_at must be a plain decimal number such as 2 or 2.5, got '010'"),
    ("defaults:\n  on_confirmed: [block: 1:30]\n",
     "2:25: bad duration '1:30': a whole number and a unit m, h, d or w (30m, 12h, 7d, 2w)"),
    ("defaults:\n  alert_at: 1\n  alert_at: 2\n",
     "3:3: duplicate key 'alert_at' in defaults (first at line 2)"),
    ("rules:\n  - prefix: 198.51.100.0/24\n  - prefix: 198.51.100.0/24\n",
     "3:13: duplicate rule: 198.51.100.0/24 for any category already has a rule at line 2"),
    ("rules:\n  - {prefix: 2001:db8::/32, categories: [spam, c2]}\n"
     "  - {prefix: '2001:0db8::/32', categories: [c2, ddos]}\n",
     "3:14: duplicate rule: 2001:db8::/32 for category c2 already has a rule at line 2"),
    ("rules:\n  - categories: [spam]\n  - categories: spam\n",
     "3:17: duplicate rule: every address for category spam already has a rule at line 2"),
    ("rules:\n  - prefix: 198.51.100.0/24\n    categories: [spam, spma]\n",
     "3:24: unknown category 'spma' (known: open-proxy, open-relay, open-resolver, phishing, fraud, spam, "
     "ssh-brute-force, brute-force, sql-injection, web-attack, ddos, port-scan, bad-bot, c2, malware-host, "
     "infected)"),
    ("rules:\n  - prefix: 198.51.100.0/24\n    categories: []\n",
     "3:17: categories is an empty list; leave it out to match every category"),
    ("rules:\n  - verify_at: 2\n",
     "2:5: a rule needs a prefix or categories; settings for every address and category go under "
     "'defaults:'"),
    ("rules:\n  prefix: 198.51.100.0/24\n",
     "2:3: rules must be a list of rules, each item starting with '- prefix:'"),
    ("rules:\n  - prefix: 198.51.100.0/24\n   verify_at: 1\n",
     "3:4: YAML syntax error: expected <block end>, but found '<block mapping start>' (while parsing a "
     "block collection at line 2)"),
    ("defaults:\n  checks: [open-proxy\n",
     "3:1: YAML syntax error: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence "
     "at line 2)"),
    ("- prefix: 198.51.100.0/24\n",
     "1:1: the policy must be a mapping with the keys webhooks, defaults, rules"),
])
def test_each_mistake_is_reported_at_its_line_and_column(text, expected):
    assert expected in problems(text)


def test_every_problem_is_reported_at_once_in_the_format_policy_check_prints():
    """One run of `netimmune policy check` shows every mistake, in file order, as FILE:LINE:COL lines."""
    text = """\
        rules:
          - prefix: 198.51.100.0/24
            checks: [open-prxy]
            on_confirmed: [block: 7x]
          - prefix: 203.0.113.1/8
            alert_at: -2
        defaults:
          verify_at: 1
          verfy_at: 1
        """
    with pytest.raises(PolicyError) as raised:
        parse(text)
    assert str(raised.value).splitlines() == [
        "policy.yaml:3:14: unknown check 'open-prxy' "
        "(known: open-proxy, open-relay, open-resolver, port-scan)",
        "policy.yaml:4:27: bad duration '7x': a whole number and a unit m, h, d or w (30m, 12h, 7d, 2w)",
        "policy.yaml:5:13: bad prefix '203.0.113.1/8': host bits set (the network is 203.0.0.0/8)",
        "policy.yaml:6:15: alert_at must not be negative, got -2",
        "policy.yaml:9:3: unknown key 'verfy_at' in defaults "
        "(known: verify_at, alert_at, checks, on_confirmed, on_refuted, on_threshold)",
    ]


def test_yaml_anchors_and_aliases_are_refused_where_they_start():
    """An alias repeats a subtree without repeating its text: one list reused in every rule once took
    `policy check` 16 s and 1.6 GB. A policy spells every value out instead."""
    assert problems("""\
        defaults:
          on_confirmed: &actions [alert, ticket]
          on_threshold: *actions
        """) == ["2:17: anchors and aliases (&name, *name) are not allowed in a policy; write each value out"]


def test_policy_file_over_the_size_limit_is_refused_unread(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("# padding\n" * (MAX_POLICY_BYTES // 10) + "rules:\n")
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert str(raised.value) == f"{path}:1:1: the file is larger than 1 MiB, the most a policy may be"


def test_load_policy_names_the_file_in_its_errors(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("defaults:\n  checks: [open-proxy, nmap]\n")
    with pytest.raises(PolicyError, match=rf"^{path}:2:24: unknown check 'nmap'"):
        load_policy(path)


def test_load_policy_reports_where_the_text_stops_being_utf8(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_bytes("# ünïcode is fine\nrules: ".encode() + b"\xff\n")
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert str(raised.value) == f"{path}:2:8: not UTF-8 text"


CATEGORY_SETS = st.sampled_from([None, frozenset({"spam"}), frozenset({"open-proxy", "port-scan"})])
PREFIXES = st.builds(lambda length, bits: ipaddress.ip_network((bits, length), strict=False),
                     st.integers(0, 32), st.integers(0, 2**32 - 1))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(PREFIXES, CATEGORY_SETS), unique=True, max_size=12),
       st.integers(0, 2**32 - 1), st.sampled_from(["spam", "open-proxy", "c2"]))
def test_rule_for_agrees_with_a_scan_of_every_rule(keys, address, category):
    """The prefix-length index picks what checking every rule by hand would pick."""
    base = DEFAULT_POLICY.rules[0]
    rules = tuple(Rule(**{**base.__dict__, "prefix": prefix, "categories": cats, "line": n})
                  for n, (prefix, cats) in enumerate(keys, start=1))
    ip = ipaddress.IPv4Address(address)
    applicable = [r for r in rules if ip in r.prefix and (r.categories is None or category in r.categories)]
    best = max(applicable, key=lambda r: (r.prefix.prefixlen, r.categories is not None), default=base)
    assert Policy(rules=(*rules, base)).rule_for(ip, category).line == best.line
