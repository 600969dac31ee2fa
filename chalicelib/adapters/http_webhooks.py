"""Webhook POSTs over HTTP(S) with httpx: one deadline for the whole request, no redirects (a redirect is a
failure to fix).

httpx's timeouts bound each connect, write and read, so a receiver answering a byte at a time would hold a
request for as long as it likes; the request runs in an event loop of its own instead, and is cancelled at
the deadline. The answer is its status line: the body is not read.
"""
from __future__ import annotations

import asyncio

import httpx


class HttpWebhookSender:
    def __init__(self, timeout: float = 10.0):
        self.timeout = timeout
        self._tls = httpx.create_ssl_context()  # loading the CA bundle is the slow part of making a client

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        try:
            return asyncio.run(self._post(url, body, headers))
        except TimeoutError:
            raise httpx.TimeoutException(f"no answer from {url} within {self.timeout:g} s") from None

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        async with asyncio.timeout(self.timeout), httpx.AsyncClient(
                timeout=self.timeout, follow_redirects=False, verify=self._tls) as client:
            async with client.stream("POST", url, content=body, headers=headers) as response:
                return response.status_code
