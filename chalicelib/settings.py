"""A node's settings, read once from the environment (Lambda) or from CLI options (local)."""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from .protocol.delegation import plain_endpoint
from .protocol.keys import parse_public_key

ENV_PREFIX = "NETIMMUNE_"
STORES = ("sqlite", "dynamodb")
LOCAL_HOST, LOCAL_PORT = "127.0.0.1", 8080   # where `netimmune serve` listens unless told otherwise
FLAGS = {**dict.fromkeys(("1", "true", "t", "yes", "y", "on"), True),   # as click reads `report --dev`'s variable
         **dict.fromkeys(("0", "false", "f", "no", "n", "off", ""), False)}


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def env_setting(name: str, env: Mapping[str, str] = os.environ) -> str | None:
    """NETIMMUNE_<name>, or None when it is unset or empty."""
    return env.get(ENV_PREFIX + name) or None


@dataclass(frozen=True)
class Settings:
    db_path: Path = Path("netimmune.db")
    key_file: Path | None = None      # default: the db path with the suffix .key
    endpoint: str = f"http://{LOCAL_HOST}:{LOCAL_PORT}"  # public base URL: canaries and alerts name it
    trust_anchor: str | None = None   # the root key; None means this node is the root
    dev_mode: bool = False            # allows special-purpose space such as loopback
    referral_ttl: int = 3600
    negative_ttl: int = 300
    grant_days: int = 365
    max_future_minutes: int = 15      # reports observed further in the future are refused
    max_age_days: int = 60            # and so are reports older than this
    key_rate_per_minute: int = 600    # reports one reporter key may send
    client_rate_per_minute: int = 600  # requests one client address may send
    half_life_hours: float = 7 * 24   # a report's weight halves over this
    trust_peer_header: bool = False   # set by `netimmune serve`: the WSGI adapter names the peer
    policy_path: Path | None = None   # the node's policy YAML; None: the built-in default policy
    scan_cooldown_seconds: int = 3600  # at most one verification scan per address per cool-down
    max_concurrent_checks: int = 4    # probe connections one verification has open at once
    check_timeout: float = 5.0        # seconds per probe connection
    proxy_ports: tuple[int, ...] | None = None    # None: each check's usual ports
    relay_ports: tuple[int, ...] | None = None
    resolver_port: int | None = None
    scan_ports: tuple[int, ...] | None = None
    resolver_qname: str = "example.com"
    outbox_dir: Path | None = None    # alerts as .eml files; default: <db>.outbox beside the database
    smtp_host: str | None = None      # a smarthost for alerts, if any
    smtp_port: int = 25
    alert_from: str = "netimmune@localhost"
    alert_to: tuple[str, ...] = ()
    alerts_per_window: int = 10       # beyond this many alerts per window, alerts fold into a digest
    alert_window_minutes: int = 15
    # On AWS (store "dynamodb"): DynamoDB, SQS and SNS take the place of SQLite, the job table and SMTP.
    store: str = "sqlite"
    table_name: str | None = None
    verify_queue_url: str | None = None
    alert_topic_arn: str | None = None
    key_parameter: str | None = None  # an SSM SecureString holding the key's seed; None: the key file
    metrics_namespace: str | None = None  # POWERTOOLS_METRICS_NAMESPACE; None: no CloudWatch metrics

    def __post_init__(self):
        if self.store not in STORES:
            raise SettingsError(f"{ENV_PREFIX}STORE must be one of {', '.join(STORES)}, got {self.store!r}")
        if self.store == "dynamodb":
            missing = [f"{ENV_PREFIX}{name}" for name, value in (
                ("TABLE", self.table_name), ("VERIFY_QUEUE_URL", self.verify_queue_url),
                ("ALERT_TOPIC_ARN", self.alert_topic_arn), ("KEY_PARAMETER", self.key_parameter)) if not value]
            if missing:
                raise SettingsError(f"{', '.join(missing)} must be set when {ENV_PREFIX}STORE is dynamodb")
        try:   # normalised here, wherever it came from: the canary URL is endpoint + "/v1/canary/…"
            object.__setattr__(self, "endpoint", plain_endpoint(self.endpoint))
        except ValueError as exc:
            raise SettingsError(f"{ENV_PREFIX}ENDPOINT: {exc}") from None
        if self.trust_anchor is not None:
            try:
                parse_public_key(self.trust_anchor)
            except ValueError as exc:
                raise SettingsError(f"{ENV_PREFIX}TRUST_ANCHOR: {exc}") from None
        for name in ("referral_ttl", "negative_ttl", "grant_days", "max_future_minutes", "max_age_days",
                     "key_rate_per_minute", "client_rate_per_minute", "half_life_hours", "max_concurrent_checks",
                     "alerts_per_window", "alert_window_minutes", "check_timeout"):
            if not getattr(self, name) > 0:   # not `<= 0`, which nan passes
                raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be positive")

    @property
    def outbox_path(self) -> Path:
        return self.outbox_dir or self.db_path.with_suffix(".outbox")

    @property
    def key_path(self) -> Path:
        return self.key_file or self.db_path.with_suffix(".key")

    def with_overrides(self, **changes) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        def get(name: str) -> str | None:
            return env_setting(name, env)

        def ports(name: str, single: bool = False) -> tuple[int, ...] | None:
            raw = get(name)
            try:
                found = tuple(int(p) for p in raw.split(",")) if raw else None
            except ValueError:
                found = (0,)
            if found and (not all(0 < p < 65536 for p in found) or single and len(found) > 1):
                what = "a port number" if single else "comma-separated port numbers"
                raise SettingsError(f"{ENV_PREFIX}{name} must be {what} from 1 to 65535, got {raw!r}")
            return found

        def port(name: str, default: int | None) -> int | None:
            found = ports(name, single=True)
            return found[0] if found else default

        def integer(name: str, default: int) -> int:
            raw = get(name)
            try:
                return default if raw is None else int(raw)
            except ValueError:
                raise SettingsError(f"{ENV_PREFIX}{name} must be an integer, got {raw!r}") from None

        def seconds(name: str, default: float) -> float:
            raw = get(name)
            try:
                value = default if raw is None else float(raw)
                if math.isfinite(value):   # float() also reads "nan" and "inf"
                    return value
            except ValueError:
                pass
            raise SettingsError(f"{ENV_PREFIX}{name} must be a number of seconds, got {raw!r}")

        def flag(name: str) -> bool:
            """A word that is neither on nor off is a mistake, not off."""
            raw = get(name) or ""
            try:
                return FLAGS[raw.strip().lower()]
            except KeyError:
                raise SettingsError(f"{ENV_PREFIX}{name} must be 1, true, yes or on, or 0, false, no or off, "
                                    f"got {raw!r}") from None

        defaults = cls()
        return cls(
            db_path=Path(get("DB") or defaults.db_path),
            key_file=Path(get("KEY_FILE")) if get("KEY_FILE") else None,
            endpoint=get("ENDPOINT") or defaults.endpoint,
            trust_anchor=get("TRUST_ANCHOR"),
            dev_mode=flag("DEV_MODE"),
            referral_ttl=integer("REFERRAL_TTL", defaults.referral_ttl),
            negative_ttl=integer("NEGATIVE_TTL", defaults.negative_ttl),
            grant_days=integer("GRANT_DAYS", defaults.grant_days),
            key_rate_per_minute=integer("KEY_RATE_PER_MINUTE", defaults.key_rate_per_minute),
            client_rate_per_minute=integer("CLIENT_RATE_PER_MINUTE", defaults.client_rate_per_minute),
            half_life_hours=integer("HALF_LIFE_HOURS", int(defaults.half_life_hours)),
            policy_path=Path(get("POLICY")) if get("POLICY") else None,
            scan_cooldown_seconds=integer("SCAN_COOLDOWN_SECONDS", defaults.scan_cooldown_seconds),
            max_concurrent_checks=integer("MAX_CONCURRENT_CHECKS", defaults.max_concurrent_checks),
            proxy_ports=ports("PROXY_PORTS"), relay_ports=ports("RELAY_PORTS"), scan_ports=ports("SCAN_PORTS"),
            resolver_port=port("RESOLVER_PORT", None),
            resolver_qname=get("RESOLVER_QNAME") or defaults.resolver_qname,
            check_timeout=seconds("CHECK_TIMEOUT", defaults.check_timeout),
            outbox_dir=Path(get("OUTBOX")) if get("OUTBOX") else None,
            smtp_host=get("SMTP_HOST"), smtp_port=port("SMTP_PORT", defaults.smtp_port),
            alert_from=get("ALERT_FROM") or defaults.alert_from,
            alert_to=tuple(a.strip() for a in (get("ALERT_TO") or "").split(",") if a.strip()),
            alerts_per_window=integer("ALERTS_PER_WINDOW", defaults.alerts_per_window),
            alert_window_minutes=integer("ALERT_WINDOW_MINUTES", defaults.alert_window_minutes),
            store=(get("STORE") or defaults.store).strip().lower(),
            table_name=get("TABLE"), verify_queue_url=get("VERIFY_QUEUE_URL"), alert_topic_arn=get("ALERT_TOPIC_ARN"),
            key_parameter=get("KEY_PARAMETER"),
            metrics_namespace=env.get("POWERTOOLS_METRICS_NAMESPACE") or None,
        )
