"""An organisation's deployment, described by one YAML file in infra/orgs/, checked before anything is built."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from chalicelib.core.policy import PolicyError, load_policy
from chalicelib.protocol.keys import InvalidKey, parse_public_key
from chalicelib.protocol.prefixes import AddressError, parse_prefix

ORGS_DIR = Path(__file__).resolve().parent / "orgs"

# The name goes into the stack, table, queue, topic and function names; 32 characters keep all of them
# inside AWS's limits (64 for a function name, 80 for a queue name).
NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")  # E.164, what SNS SMS subscriptions take
HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
CERTIFICATE_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$")

REQUIRED = ("name", "prefixes", "root_url", "root_key", "policy")
OPTIONAL = ("alert_emails", "alert_phones", "domain", "certificate_arn", "api_rate_limit", "verify_concurrency")


class OrgConfigError(ValueError):
    """Every problem found in an org file; str() names the file and the field of each, one per line."""

    def __init__(self, source: Path | str, problems: list[str]):
        self.source = str(source)
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


@dataclass(frozen=True)
class OrgConfig:
    name: str
    prefixes: tuple[str, ...]
    root_url: str
    root_key: str
    policy: Path                         # resolved; a relative path in the file is relative to the file
    alert_emails: tuple[str, ...] = ()
    alert_phones: tuple[str, ...] = ()
    domain: str | None = None            # the node's public host name; None: the API Gateway URL
    certificate_arn: str | None = None   # an ACM certificate for `domain` in the stack's region
    api_rate_limit: int = 50             # requests per second across the API (burst: twice that)
    verify_concurrency: int = 2          # verify workers at once, so reports never make a scanner

    @property
    def endpoint(self) -> str:
        """The URL other nodes reach this one at; empty when the app must take it from each request."""
        return f"https://{self.domain}" if self.domain else ""

    @property
    def key_parameter(self) -> str:
        """The SSM SecureString holding the node's Ed25519 seed; the operator creates it (docs/aws.md)."""
        return f"/netimmune/{self.name}/node-key"


def org_file(name: str) -> Path:
    return ORGS_DIR / f"{name}.yaml"


def load_org(path: Path | str) -> OrgConfig:
    """The org described by the file at `path`, or OrgConfigError listing every problem in it."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OrgConfigError(path, ["no such file; an org is described by infra/orgs/<name>.yaml"]) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise OrgConfigError(path, [f"cannot read: {exc}"]) from None
    return parse_org(doc, path)


def parse_org(doc: Any, path: Path) -> OrgConfig:
    """Check every field of a parsed org file; the name must match the file's name."""
    if not isinstance(doc, dict):
        raise OrgConfigError(path, ["expected a mapping with " + ", ".join(REQUIRED)])
    problems = [f"{key}: missing" for key in REQUIRED if key not in doc]
    problems += [f"{key}: unknown field (known: {', '.join(REQUIRED + OPTIONAL)})"
                 for key in doc if key not in REQUIRED + OPTIONAL]
    checked = {}
    for key, check in _CHECKS.items():
        if key in doc:
            try:
                checked[key] = check(doc[key], path)
            except ValueError as exc:
                problems.append(f"{key}: {exc}")
    if checked.get("name") not in (None, path.stem):
        problems.append(f"name: {checked['name']!r} differs from the file name {path.stem!r}")
    if "alert_emails" not in doc and "alert_phones" not in doc:
        problems.append("alert_emails, alert_phones: at least one subscriber is needed, or alerts reach no one")
    if "certificate_arn" in doc and "domain" not in doc:
        problems.append("certificate_arn: given without a domain")
    if problems:
        raise OrgConfigError(path, problems)
    return OrgConfig(**checked)


def _name(value: Any, path: Path) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise ValueError(f"{value!r} must be 1-32 lowercase letters, digits and inner hyphens")
    return value


def _prefixes(value: Any, path: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("expected a non-empty list of prefixes in CIDR form")
    networks = []
    for item in value:
        try:
            networks.append(parse_prefix(item))
        except AddressError as exc:
            raise ValueError(str(exc)) from None
    for i, outer in enumerate(networks):
        for inner in networks[i + 1:]:
            if outer.version == inner.version and outer.overlaps(inner):
                raise ValueError(f"{outer} and {inner} overlap; list each block once")
    return tuple(str(n) for n in networks)


def _https_url(value: Any, path: Path) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{value!r} must be an https:// URL")
    return value.rstrip("/")


def _public_key(value: Any, path: Path) -> str:
    try:
        parse_public_key(value)
    except InvalidKey as exc:
        raise ValueError(str(exc)) from None
    return value


def _policy(value: Any, path: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError("expected the path of a policy file, relative to this file")
    policy = (path.parent / value).resolve()
    try:
        load_policy(policy)
    except FileNotFoundError:
        raise ValueError(f"no policy file at {policy}") from None
    except PolicyError as exc:
        raise ValueError(f"{value} is not a valid policy:\n{exc}") from None
    return policy


def _strings(pattern: re.Pattern, what: str):
    def check(value: Any, path: Path) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise ValueError(f"expected a list of {what}")
        bad = [item for item in value if not isinstance(item, str) or not pattern.match(item)]
        if bad:
            raise ValueError(f"not {what}: {', '.join(map(repr, bad))}")
        return tuple(value)
    return check


def _matching(pattern: re.Pattern, what: str):
    def check(value: Any, path: Path) -> str:
        if not isinstance(value, str) or not pattern.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value
    return check


def _integer(low: int, high: int):
    def check(value: Any, path: Path) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{value!r} must be a whole number from {low} to {high}")
        return value
    return check


_CHECKS = {
    "name": _name,
    "prefixes": _prefixes,
    "root_url": _https_url,
    "root_key": _public_key,
    "policy": _policy,
    "alert_emails": _strings(EMAIL, "email addresses"),
    "alert_phones": _strings(PHONE, "phone numbers in E.164 form (+15555550100)"),
    "domain": _matching(HOSTNAME, "a lowercase host name such as reports.example.net"),
    "certificate_arn": _matching(CERTIFICATE_ARN, "an ACM certificate ARN"),
    "api_rate_limit": _integer(1, 10_000),
    "verify_concurrency": _integer(2, 1_000),  # the SQS event source's floor is 2
}
