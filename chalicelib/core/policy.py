"""Per-prefix policy: what a node does with the reports about its own addresses (DESIGN.md §4).

A policy is a YAML file (examples/policy.yaml documents the schema). Rules are chosen by longest prefix,
then by category; each gives the score thresholds, the checks to run and the actions to take.

Parsing walks PyYAML's composed node tree rather than loaded data, so every value keeps the line and
column it came from, and it goes on after a problem: an operator sees every mistake in one run, each
as `FILE:LINE:COL: message`, the way a compiler reports them.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from ipaddress import IPv6Address
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..protocol.categories import CATEGORIES
from ..protocol.prefixes import AddressError, IPAddress, IPNetwork, parse_ip, parse_prefix

KNOWN_CHECKS = ("open-proxy", "open-relay", "open-resolver", "port-scan")
CATEGORY_CHECK = "category"
"""In `checks:`, stands for the reported category's own check, if it has one."""
MAX_POLICY_BYTES = 1024 * 1024

ACTION_KINDS = ("alert", "block", "webhook", "ticket")
MAX_BLOCK = timedelta(days=3660)
SETTING_KEYS = ("verify_at", "alert_at", "checks", "on_confirmed", "on_refuted", "on_threshold")
RULE_KEYS = ("prefix", "categories", *SETTING_KEYS)
TOP_KEYS = ("webhooks", "defaults", "rules")
WEBHOOK_KEYS = ("url", "secret_env")

_DURATION = re.compile(r"([1-9][0-9]{0,6})([mhdw])")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STR, _NULL = "tag:yaml.org,2002:str", "tag:yaml.org,2002:null"
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
# Thresholds as people write them. YAML 1.1 also reads 1:30 as 90, 010 as 8, 0x1f and 1_000 as numbers.
_DECIMAL = re.compile(r"[-+]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)")
_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


@dataclass(frozen=True)
class Action:
    kind: str  # one of ACTION_KINDS
    duration: timedelta | None = None  # block only: how long the address stays on the blocklist
    webhook: str | None = None  # webhook only: a name in Policy.webhooks


@dataclass(frozen=True)
class Webhook:
    name: str
    url: str
    secret_env: str  # the environment variable holding the secret the request is signed with
    line: int


@dataclass(frozen=True)
class Rule:
    prefix: IPNetwork | None  # None: every address (the defaults, or a rule by category only)
    categories: frozenset[str] | None  # None: every category
    verify_at: float  # weighted score at which the checks run
    alert_at: float  # weighted score at which the on_threshold actions run, verified or not
    checks: tuple[str, ...]  # may hold CATEGORY_CHECK; in a rule from rule_for, only real checks
    on_confirmed: tuple[Action, ...]
    on_refuted: tuple[Action, ...]
    on_threshold: tuple[Action, ...]
    line: int  # where the rule is defined; 0 for the built-in defaults


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    webhooks: Mapping[str, Webhook] = field(default_factory=lambda: MappingProxyType({}))
    _by_prefix: dict[IPNetwork | None, tuple[Rule, ...]] = field(init=False, repr=False, compare=False)
    _lengths: dict[int, tuple[int, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_prefix: dict[IPNetwork | None, list[Rule]] = {}
        for rule in self.rules:
            by_prefix.setdefault(rule.prefix, []).append(rule)
        if not any(rule.categories is None for rule in by_prefix.get(None, ())):
            raise ValueError("a policy needs a default rule (prefix None, categories None)")
        lengths = {version: tuple(sorted({p.prefixlen for p in by_prefix if p and p.version == version},
                                         reverse=True)) for version in (4, 6)}
        object.__setattr__(self, "_by_prefix", {p: tuple(rules) for p, rules in by_prefix.items()})
        object.__setattr__(self, "_lengths", lengths)

    def rule_for(self, ip: str | IPAddress, category: str) -> Rule:
        """The rule with the longest prefix holding `ip` that applies to `category`; at equal prefixes a
        rule naming the category beats one for every category; the defaults when no prefix matches.

        In the rule returned, `checks` names real checks: `category` is replaced by the category's own.
        """
        address = _address(ip)
        for length in self._lengths[address.version]:
            rules = self._by_prefix.get(ipaddress.ip_network((address, length), strict=False))
            rule = rules and _pick(rules, category)
            if rule:
                return _resolve_checks(rule, category)
        return _resolve_checks(_pick(self._by_prefix[None], category), category)


def _address(ip: str | IPAddress) -> IPAddress:
    if isinstance(ip, str):
        return parse_ip(ip)
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped:
        return ip.ipv4_mapped
    return ip


def _pick(rules: tuple[Rule, ...], category: str) -> Rule | None:
    for rule in rules:
        if rule.categories is not None and category in rule.categories:
            return rule
    return next((rule for rule in rules if rule.categories is None), None)


def _resolve_checks(rule: Rule, category: str) -> Rule:
    if CATEGORY_CHECK not in rule.checks:
        return rule
    own = CATEGORIES[category].check if category in CATEGORIES else None
    checks = (own if check == CATEGORY_CHECK else check for check in rule.checks)
    return replace(rule, checks=tuple(dict.fromkeys(check for check in checks if check)))


DEFAULT_POLICY = Policy(rules=(Rule(
    prefix=None, categories=None, verify_at=1.0, alert_at=3.0, checks=(CATEGORY_CHECK,),
    on_confirmed=(Action("alert"),), on_refuted=(), on_threshold=(Action("alert"),), line=0),))


@dataclass(frozen=True)
class PolicyProblem:
    line: int  # 1-based
    column: int  # 1-based
    message: str


class PolicyError(ValueError):
    """Every problem found in a policy; str() is what `netimmune policy check` prints, one per line."""

    def __init__(self, source: str, errors: list[PolicyProblem]):
        self.source = source
        self.errors = sorted(set(errors), key=lambda p: (p.line, p.column, p.message))
        super().__init__("\n".join(f"{source}:{p.line}:{p.column}: {p.message}" for p in self.errors))


def load_policy(path: str | Path) -> Policy:
    """The policy in the file at `path`; OSError when it cannot be read, PolicyError when it is wrong.

    A file over MAX_POLICY_BYTES is refused unread: no real policy is that large, and a node must not
    spend its memory finding out what a huge file holds.
    """
    with open(path, "rb") as file:
        data = file.read(MAX_POLICY_BYTES + 1)
    if len(data) > MAX_POLICY_BYTES:
        message = f"the file is larger than {MAX_POLICY_BYTES // 2**20} MiB, the most a policy may be"
        raise PolicyError(str(path), [PolicyProblem(1, 1, message)])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        valid = data[:exc.start].decode("utf-8")
        raise PolicyError(str(path), [_problem_at(valid, len(valid), "not UTF-8 text")]) from None
    return parse_policy(text, source=str(path))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """The policy in `text`; PolicyError lists every problem found, each at its line and column."""
    try:
        root = yaml.compose(text, Loader=_PolicyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = PolicyProblem(mark.line + 1, mark.column + 1, _syntax_message(exc))
        raise PolicyError(source, [problem]) from None
    except yaml.reader.ReaderError as exc:
        problem = _problem_at(text, exc.position, f"YAML syntax error: {exc.reason}")
        raise PolicyError(source, [problem]) from None
    reader = _Reader()
    policy = reader.policy(root)
    if reader.problems:
        raise PolicyError(source, reader.problems)
    return policy


class _Refused(yaml.MarkedYAMLError):
    """YAML that parses but that a policy may not use; `problem` says why."""


class _PolicyLoader(yaml.SafeLoader):
    """SafeLoader without anchors and aliases. An alias repeats a subtree without repeating its text, so
    a small file could multiply the walk over it (and the memory it takes) without bound."""

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        if getattr(event, "anchor", None):  # an anchored node (&name) or an alias (*name)
            raise _Refused(problem="anchors and aliases (&name, *name) are not allowed in a policy; "
                                   "write each value out", problem_mark=event.start_mark)
        return super().compose_node(parent, index)


def _problem_at(text: str, offset: int, message: str) -> PolicyProblem:
    before = text[:offset]
    return PolicyProblem(before.count("\n") + 1, offset - before.rfind("\n"), message)


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    if isinstance(exc, _Refused):
        return exc.problem
    if not (exc.problem and exc.context):
        return f"YAML syntax error: {exc.problem or exc.context}"
    if exc.problem.startswith("but "):
        return f"YAML syntax error: {exc.context}, {exc.problem}"
    where = f" at line {exc.context_mark.line + 1}" if exc.context_mark else ""
    return f"YAML syntax error: {exc.problem} ({exc.context}{where})"


def _known(names) -> str:
    return f"(known: {', '.join(names)})"


def _describe(prefix: IPNetwork | None, categories: frozenset[str] | None) -> str:
    where = str(prefix) if prefix else "every address"
    return f"{where} for {'category ' + ', '.join(sorted(categories)) if categories else 'any category'}"


_INVALID = object()
"""Stands for a value whose problem is recorded, so checks that depend on it are skipped."""


class _Reader:
    """Turns the composed YAML tree into a Policy, recording every problem instead of stopping at one.

    After a problem the walk goes on to find the others; a policy is built only when there are none.
    """

    def __init__(self) -> None:
        self.problems: list[PolicyProblem] = []
        self.webhooks: dict[str, Webhook] = {}
        self.seen: list[Rule] = []

    def problem(self, node: Node, message: str) -> Any:
        self.problems.append(PolicyProblem(node.start_mark.line + 1, node.start_mark.column + 1, message))
        return _INVALID

    def policy(self, root: Node | None) -> Policy | None:
        if root is None:
            return DEFAULT_POLICY
        top = self.mapping(root, TOP_KEYS, "the policy")
        self.webhooks = self.webhook_map(top["webhooks"][1]) if "webhooks" in top else {}
        defaults = self.defaults(top.get("defaults"))
        rules = [self.rule(node, defaults) for node in self.rule_nodes(top.get("rules"))]
        if self.problems:
            return None
        return Policy(rules=(*rules, defaults), webhooks=MappingProxyType(self.webhooks))

    def mapping(self, node: Node, known: tuple[str, ...], what: str) -> dict[str, tuple[Node, Node]]:
        """The entries of a mapping by key, each as (key node, value node). Unknown and repeated keys
        are problems, so a typo never passes silently."""
        if not isinstance(node, MappingNode):
            self.problem(node, f"{what} must be a mapping with the keys {', '.join(known)}")
            return {}
        entries: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, ScalarNode) else _show(key)
            if name not in known:
                self.problem(key, f"unknown key '{name}' in {what} {_known(known)}")
            elif name in entries:
                first = entries[name][0].start_mark.line + 1
                self.problem(key, f"duplicate key '{name}' in {what} (first at line {first})")
            else:
                entries[name] = (key, value)
        return entries

    def webhook_map(self, node: Node) -> dict[str, Webhook]:
        if _is_null(node):
            return {}
        if not isinstance(node, MappingNode):
            self.problem(node, "webhooks must map each name to its url and secret_env")
            return {}
        webhooks: dict[str, Webhook] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, ScalarNode) else ""
            if not _NAME.fullmatch(name):
                self.problem(key, f"bad webhook name {_show(key)}: use letters, digits, '.', '_' and '-'")
            elif name in webhooks:
                self.problem(key, f"duplicate webhook '{name}' (first at line {webhooks[name].line})")
            else:
                fields = self.mapping(value, WEBHOOK_KEYS, f"webhook '{name}'")
                missing = [wanted for wanted in WEBHOOK_KEYS if wanted not in fields]
                if missing and isinstance(value, MappingNode):
                    self.problem(key, f"webhook '{name}' needs {' and '.join(missing)}")
                url = self.url(fields["url"][1]) if "url" in fields else ""
                secret_env = self.env_name(fields["secret_env"][1]) if "secret_env" in fields else ""
                webhooks[name] = Webhook(name, url, secret_env, key.start_mark.line + 1)
        return webhooks

    def url(self, node: Node) -> Any:
        parts = urlsplit(node.value) if isinstance(node, ScalarNode) else None
        if not parts or parts.scheme not in ("http", "https") or not parts.hostname:
            return self.problem(node, f"bad url {_show(node)}: an http(s) URL with a host is needed")
        return node.value

    def env_name(self, node: Node) -> Any:
        if not (isinstance(node, ScalarNode) and _ENV_NAME.fullmatch(node.value)):
            return self.problem(node, f"bad secret_env {_show(node)}: the name of an environment variable")
        return node.value

    def defaults(self, entry: tuple[Node, Node] | None) -> Rule:
        builtin = DEFAULT_POLICY.rules[0]
        if entry is None:
            return builtin
        key, node = entry
        fields = {} if _is_null(node) else self.mapping(node, SETTING_KEYS, "defaults")
        return replace(builtin, line=key.start_mark.line + 1, **self.settings(fields))

    def rule_nodes(self, entry: tuple[Node, Node] | None) -> list[Node]:
        if entry is None or _is_null(entry[1]):
            return []
        if not isinstance(entry[1], SequenceNode):
            self.problem(entry[1], "rules must be a list of rules, each item starting with '- prefix:'")
            return []
        return entry[1].value

    def rule(self, node: Node, defaults: Rule) -> Rule:
        """A rule: what it sets, the rest from the defaults."""
        fields = self.mapping(node, RULE_KEYS, "a rule")
        prefix = self.prefix(fields["prefix"][1]) if "prefix" in fields else None
        categories = self.categories(fields["categories"][1]) if "categories" in fields else None
        rule = replace(defaults, prefix=prefix, categories=categories, line=node.start_mark.line + 1,
                       **self.settings(fields))
        if not isinstance(node, MappingNode):
            return rule
        if prefix is None and categories is None:
            self.problem(node, "a rule needs a prefix or categories; settings for every address and "
                               "category go under 'defaults:'")
        elif prefix is not _INVALID and categories is not _INVALID:
            self.unique(rule, (fields.get("prefix") or fields["categories"])[1])
        return rule

    def unique(self, rule: Rule, node: Node) -> None:
        """At most one rule per prefix applies to a category, or the choice between them would be a guess."""
        for other in self.seen:
            if other.prefix != rule.prefix or (other.categories is None) != (rule.categories is None):
                continue
            shared = rule.categories and rule.categories & other.categories
            if rule.categories is None or shared:
                self.problem(node, f"duplicate rule: {_describe(rule.prefix, shared or None)} already "
                                   f"has a rule at line {other.line}")
                break
        self.seen.append(rule)

    def settings(self, fields: dict[str, tuple[Node, Node]]) -> dict[str, Any]:
        parse = {"verify_at": self.threshold, "alert_at": self.threshold, "checks": self.checks,
                 "on_confirmed": self.actions, "on_refuted": self.actions, "on_threshold": self.actions}
        return {key: parse[key](node, key) for key, (_, node) in fields.items() if key in parse}

    def threshold(self, node: Node, key: str) -> Any:
        if not (isinstance(node, ScalarNode) and node.tag in _NUMBER_TAGS):
            return self.problem(node, f"{key} must be a number (a weighted score), got {_show(node)}")
        if not _DECIMAL.fullmatch(node.value):
            return self.problem(node, f"{key} must be a plain decimal number such as 2 or 2.5, got {_show(node)}")
        value = float(node.value)
        if value < 0:
            return self.problem(node, f"{key} must not be negative, got {node.value}")
        return value

    def prefix(self, node: Node) -> Any:
        text = node.value if isinstance(node, ScalarNode) else ""
        try:
            network = parse_prefix(text)
        except AddressError:
            return self.problem(node, f"bad prefix {_show(node)}: {_prefix_mistake(text)}")
        if network.version == 6 and network.subnet_of(_IPV4_MAPPED):
            ipv4 = ipaddress.ip_network((network.network_address.ipv4_mapped, network.prefixlen - 96))
            return self.problem(node, f"bad prefix {_show(node)}: IPv4-mapped addresses are matched as IPv4, "
                                      f"so this rule would never apply; write {ipv4}")
        return network

    def names(self, node: Node, key: str, noun: str, known: Collection[str], none_ok: bool,
              extra: tuple[str, ...] = ()) -> list[str]:
        """A list of known names, or one name alone; `none` and [] (where allowed) mean no names."""
        if none_ok and _is_word(node, "none"):
            return []
        every = "leave it out to match every category"
        if _is_null(node):
            self.problem(node, f"{key} is empty; {'write none or [] for nothing' if none_ok else every}")
            return []
        if not _items(node) and not none_ok:
            self.problem(node, f"{key} is an empty list; {every}")
        names: list[str] = []
        for item in _items(node):
            if not (isinstance(item, ScalarNode) and item.tag == _STR):
                self.problem(item, f"{key} must be names, got {_show(item)}")
            elif item.value not in known and item.value not in extra:
                self.problem(item, f"unknown {noun} '{item.value}' {_known(known)}")
            elif item.value in names:
                self.problem(item, f"{noun} '{item.value}' is listed twice")
            else:
                names.append(item.value)
        return names

    def categories(self, node: Node) -> Any:
        before = len(self.problems)
        names = self.names(node, "categories", "category", CATEGORIES, none_ok=False)
        return frozenset(names) if len(self.problems) == before else _INVALID

    def checks(self, node: Node, key: str) -> tuple[str, ...]:
        return tuple(self.names(node, key, "check", KNOWN_CHECKS, none_ok=True, extra=(CATEGORY_CHECK,)))

    def actions(self, node: Node, key: str) -> tuple[Action, ...]:
        if _is_word(node, "none"):
            return ()
        if _is_null(node):
            self.problem(node, f"{key} is empty; write none or [] for no action")
            return ()
        actions: list[Action] = []
        for item in _items(node):
            action = self.action(item)
            if action is _INVALID:
                continue
            if action in actions:
                self.problem(item, f"action {_show(item)} is listed twice in {key}")
            elif action.kind != "webhook" and any(other.kind == action.kind for other in actions):
                self.problem(item, f"{key} has more than one '{action.kind}' action")
            actions.append(action)
        return tuple(actions)

    def action(self, node: Node) -> Any:
        known = "(known: alert, block: <duration>, ticket, webhook: <name>)"
        if isinstance(node, ScalarNode):
            if node.value in ("alert", "ticket"):
                return Action(node.value)
            if node.value == "block":
                return self.problem(node, "block needs a duration, e.g. 'block: 7d'")
            if node.value == "webhook":
                return self.problem(node, "webhook needs a name from 'webhooks:', e.g. 'webhook: soc'")
            return self.problem(node, f"unknown action {_show(node)} {known}")
        if not (isinstance(node, MappingNode) and len(node.value) == 1):
            return self.problem(node, f"an action is one word or one 'kind: argument' pair {known}")
        key, value = node.value[0]
        kind = key.value if isinstance(key, ScalarNode) else None
        if kind == "block":
            duration = self.duration(value)
            return duration if duration is _INVALID else Action("block", duration=duration)
        if kind == "webhook":
            return self.webhook_ref(value)
        if kind in ("alert", "ticket"):
            return self.problem(value, f"{kind} takes no argument; write just '{kind}'")
        return self.problem(key, f"unknown action {_show(key)} {known}")

    def webhook_ref(self, node: Node) -> Any:
        if not (isinstance(node, ScalarNode) and node.value in self.webhooks):
            defined = ", ".join(self.webhooks) or "none"
            return self.problem(node, f"webhook {_show(node)} is not defined under 'webhooks:' "
                                      f"(defined: {defined})")
        return Action("webhook", webhook=node.value)

    def duration(self, node: Node) -> Any:
        match = _DURATION.fullmatch(node.value) if isinstance(node, ScalarNode) else None
        if not match:
            return self.problem(node, f"bad duration {_show(node)}: a whole number and a unit m, h, d or w "
                                      "(30m, 12h, 7d, 2w)")
        duration = int(match[1]) * _UNITS[match[2]]
        if duration > MAX_BLOCK:
            return self.problem(node, f"bad duration {_show(node)}: blocks must expire within "
                                      f"{MAX_BLOCK.days} days")
        return duration


def _prefix_mistake(text: str) -> str:
    """Why parse_prefix refused `text`, in the words an operator needs to fix it."""
    if "/" not in text:
        return "not in CIDR form (address/length)"
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return "not an IPv4 or IPv6 prefix"
    try:
        ipaddress.ip_network(text, strict=True)
    except ValueError:
        return f"host bits set (the network is {network})"
    return f"write the length as a number of bits (/{network.prefixlen}), not a netmask or padded number"


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL


def _is_word(node: Node, word: str) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _STR and node.value == word


def _items(node: Node) -> list[Node]:
    return node.value if isinstance(node, SequenceNode) else [node]


def _show(node: Node) -> str:
    """A node as the operator wrote it, short enough for one error line."""
    if isinstance(node, ScalarNode):
        return "nothing" if node.tag == _NULL else repr(node.value)
    if isinstance(node, MappingNode) and len(node.value) == 1:
        key, value = node.value[0]
        if isinstance(key, ScalarNode) and isinstance(value, ScalarNode):
            return f"'{key.value}: {value.value}'"
    return "a list" if isinstance(node, SequenceNode) else "a mapping"
