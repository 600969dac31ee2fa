"""The reporter's own configuration: where the tree's root is, which key signs, who the reporter is."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..protocol.keys import parse_public_key


class ConfigError(ValueError):
    """A missing or malformed reporter configuration; the message says how to fix it."""


def config_dir() -> Path:
    if os.environ.get("NETIMMUNE_CONFIG_DIR"):
        return Path(os.environ["NETIMMUNE_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "netimmune"


@dataclass
class ReporterConfig:
    root_url: str
    root_key: str
    key_file: str
    reporter: dict = field(default_factory=dict)   # X-ARF reporter: org, contact, domain
    credentials_file: str | None = None            # chain + endorsement giving this key a rank
    smtp_host: str | None = None                   # for reports mailed to owners not on netimmune
    smtp_port: int = 25

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
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path} is not a reporter configuration: {exc}") from None
        parse_public_key(config.root_key)
        return config

    def credentials(self) -> list:
        if not self.credentials_file:
            return []
        try:
            doc = json.loads(Path(self.credentials_file).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read credentials {self.credentials_file}: {exc}") from None
        return doc.get("credentials", doc) if isinstance(doc, dict) else doc
