"""The reporter's own configuration: where the tree's root is, which key signs, who the reporter is."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

from ..protocol.delegation import MalformedDelegation, check_endpoint
from ..protocol.endorsement import MAX_CREDENTIALS
from ..protocol.keys import InvalidKey, parse_public_key


class ConfigError(ValueError):
    """A missing or malformed reporter configuration; the message says how to fix it."""


def config_dir() -> Path:
    if os.environ.get("NETIMMUNE_CONFIG_DIR"):
        return Path(os.environ["NETIMMUNE_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "netimmune"


def check_base_url(url) -> str:
    """A node's base URL (the root's, a report's owner): what a delegation may name as an endpoint, and with a port
    something could connect to; returned without a trailing '/'."""
    try:
        checked = check_endpoint(url)
    except MalformedDelegation:
        checked = None
    if checked is None or _split(url) is None:
        raise ConfigError(f"{url!r} is not an http(s) URL with a host (and a port from 1 to 65535, if it names one)")
    return checked


def check_root_key(key) -> str:
    try:
        parse_public_key(key)
    except InvalidKey as exc:
        raise ConfigError(str(exc)) from None
    return key


def parse_smtp(text: str) -> tuple[str, int]:
    """HOST, HOST:PORT or [IPv6]:PORT; the port defaults to 25."""
    parts = _split("//" + text)
    if parts is None or not parts.hostname or parts.path:
        raise ConfigError(f"{text!r} is not HOST[:PORT] (a port from 1 to 65535)")
    return parts.hostname, parts.port or 25


def _split(url: str) -> SplitResult | None:
    """urlsplit, or None for what nothing could connect to: an unclosed [IPv6 literal, or a port that is not a number
    from 1 to 65535 (urllib takes port 0, and raises for the others only when the port is read)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    return None if port == 0 else parts


@dataclass
class ReporterConfig:
    root_url: str
    root_key: str
    key_file: str
    reporter: dict = field(default_factory=dict)   # X-ARF reporter: org, contact, domain
    credentials_file: str | None = None            # chain + endorsement giving this key a rank
    smtp_host: str | None = None                   # for reports mailed to owners not on netimmune
    smtp_port: int = 25
    dev_mode: bool = False                         # endpoints may be plain http and local: test trees only

    def __post_init__(self):
        """Checked whenever one is made, by `report init` or from a file, so a bad value is named before use."""
        for name, check in (("root_url", check_base_url), ("root_key", check_root_key)):
            try:
                setattr(self, name, check(getattr(self, name)))
            except ConfigError as exc:
                raise ConfigError(f"{name}: {exc}") from None
        wrong = [name for name, ok in (
            ("key_file", isinstance(self.key_file, str) and self.key_file),
            ("reporter", isinstance(self.reporter, dict)),
            ("credentials_file", self.credentials_file is None or isinstance(self.credentials_file, str)),
            ("smtp_host", self.smtp_host is None or isinstance(self.smtp_host, str)),
            ("smtp_port", type(self.smtp_port) is int and 0 < self.smtp_port < 65536),
            ("dev_mode", type(self.dev_mode) is bool)) if not ok]
        if wrong:
            raise ConfigError(f"malformed {', '.join(wrong)}")

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> ReporterConfig:
        try:
            doc = json.loads(path.read_text())
            config = cls(**doc)
        except FileNotFoundError:
            raise ConfigError(f"no reporter configuration at {path}; run: report init --root-url URL "
                              "--root-key KEY") from None
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path} is not a reporter configuration: {exc}") from None
        return config

    def credentials(self) -> list:
        return read_credentials(self.credentials_file) if self.credentials_file else []


def read_credentials(path: str | Path) -> list:
    """The signed documents of a credentials file: `{"credentials": [...]}` as `netimmune endorse` writes it, or
    the bare list. Anything else is refused here: a node refuses a whole report whose credentials are not a list
    of at most 10 documents (400), while it only ignores documents in one that do not verify."""
    try:
        doc = json.loads(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read credentials {path}: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{path} is not a credentials file: it is not JSON ({exc})") from None
    credentials = doc.get("credentials") if isinstance(doc, dict) else doc
    if not (isinstance(credentials, list) and 0 < len(credentials) <= MAX_CREDENTIALS
            and all(isinstance(document, dict) for document in credentials)):
        raise ConfigError(f"{path} is not a credentials file: expected a list of at most {MAX_CREDENTIALS} signed "
                          "documents, the endorser's delegation chain and its endorsement, as `netimmune endorse` "
                          "writes them")
    return credentials
