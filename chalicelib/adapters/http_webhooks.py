"""Webhook POSTs over HTTP(S) with httpx: short timeouts, no redirects (a redirect is a failure to fix)."""
from __future__ import annotations

import httpx


class HttpWebhookSender:
    def __init__(self, timeout: float = 10.0):
        self.client = httpx.Client(timeout=timeout, follow_redirects=False)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        return self.client.post(url, content=body, headers=headers).status_code
