"""The canary port: a URL on this node that records who fetched it, so a proxy is proven by use."""
from __future__ import annotations

from typing import Protocol


class Canary(Protocol):
    def new_nonce(self) -> str:
        """A fresh unguessable token; each probe uses its own, so a hit names the probe that made it."""

    def url(self, nonce: str) -> str:
        """The absolute URL that records a hit for nonce, e.g. http://203.0.113.5:8443/v1/canary/<nonce>."""

    async def was_hit(self, nonce: str) -> bool:
        """Whether a request for url(nonce) has reached this node."""
