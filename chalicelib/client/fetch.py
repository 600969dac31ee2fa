"""The client's HTTP: every request to a node or an RDAP server has one deadline, a cap on its answer, and an
endpoint the reporter may reach.

Endpoints come from delegations, and a node holder signs whatever endpoint it likes into a sub-delegation.
Without these rules a node could send the client to http://169.254.169.254/ or into the reporter's own
network, answer with gigabytes, or hold it by answering a byte at a time (httpx's timeouts bound each read,
not the request).

- Only https, and only to global addresses. A host name is resolved first, every address it has must be
  global, and the connection goes to one of those addresses while TLS still checks the certificate against
  the name: DNS cannot pass the check with one address and then connect the client to another. For the same
  reason proxies named in the environment are not used (they would connect by name). Dev mode
  (`allow_local`) lets test trees on loopback through: plain http and any address.
- The request runs in an event loop of its own under asyncio.timeout, as the node's webhook sender does.
- The answer is streamed and refused past `max_bytes`; it comes back as an httpx.Response holding the body.
"""
from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl

import httpx

from ..protocol.delegation import endpoint_refusal, ip_literal, refused_address
from ..protocol.prefixes import IPAddress

TIMEOUT = 10.0                      # seconds for one request, from the name lookup to the answer's last byte
MAX_ANSWER_BYTES = 2 * 1024 * 1024  # a batch answer for 1,000 reports is about 300 KiB
DEV_MODE_HINT = "dev mode allows it, for test trees: report init --dev, or NETIMMUNE_DEV_MODE=1"


class FetchError(Exception):
    """No answer to use; `kind` says why."""

    UNREACHABLE = "unreachable"           # no connection, an HTTP error, or no answer within the deadline
    TOO_LARGE = "too_large"               # an answer longer than max_bytes
    UNSAFE_ENDPOINT = "unsafe_endpoint"   # not https, or an address that is not global; nothing was sent

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


def json_object(response: httpx.Response) -> dict | None:
    """The body when it is a JSON object, else None: a proxy's HTML page, a stray list, or JSON nested deeper
    than Python's parser goes (RecursionError) is no answer."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


@functools.cache
def _tls() -> ssl.SSLContext:
    return httpx.create_ssl_context()  # loading the CA bundle is the slow part of making a client


class Fetcher:
    """The rules and limits of one reporter's requests. It keeps no connection open between requests, so one
    fetcher may be shared (resolver, submitter, RDAP) and needs no closing."""

    def __init__(self, allow_local: bool = False, timeout: float = TIMEOUT, max_bytes: int = MAX_ANSWER_BYTES):
        self.allow_local = allow_local
        self.timeout = timeout
        self.max_bytes = max_bytes

    def get(self, url: str, *, headers: dict | None = None, timeout: float | None = None) -> httpx.Response:
        return self.request("GET", url, headers=headers, timeout=timeout)

    def post(self, url: str, json, *, timeout: float | None = None) -> httpx.Response:
        return self.request("POST", url, json=json, timeout=timeout)

    def request(self, method: str, url: str, *, json=None, headers: dict | None = None,
                timeout: float | None = None) -> httpx.Response:
        """The whole answer within `timeout` seconds (default: the fetcher's), or a FetchError."""
        timeout = self.timeout if timeout is None else timeout
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(self._request(method, url, json, headers or {}, timeout))
        except TimeoutError:
            raise FetchError(FetchError.UNREACHABLE, f"{url} did not answer within {timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise FetchError(FetchError.UNREACHABLE, f"{url} did not answer: {type(exc).__name__}: {exc}") from None
        finally:  # not asyncio.run, which would wait for a name lookup still running past the deadline
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def check_endpoint(self, url: str) -> None:
        """Refuse `url` by its text (protocol.delegation.endpoint_refusal, the rule a node grants by): a scheme
        other than https, or an address in it that is not global. A host name is judged when a request
        resolves it."""
        try:
            parts = httpx.URL(url)
        except httpx.InvalidURL:
            raise self._refusal(url, "it is not a URL") from None
        why = endpoint_refusal(parts.scheme, parts.host, self.allow_local)
        if why:
            raise self._refusal(url, why)

    async def _request(self, method: str, url: str, json, headers: dict, timeout: float) -> httpx.Response:
        async with asyncio.timeout(timeout):
            self.check_endpoint(url)
            target = httpx.URL(url)
            addresses = await self._addresses(url, target)
            async with httpx.AsyncClient(verify=_tls(), trust_env=False, timeout=timeout) as client:
                for address in addresses:  # in the resolver's order, as socket.create_connection tries them
                    try:
                        return await self._send(client, method, target, address, json, headers)
                    except httpx.ConnectError as exc:
                        failure = exc
                raise failure

    async def _addresses(self, url: str, target: httpx.URL) -> list[IPAddress]:
        """Every address of the host, each checked: one private address among public ones is refused too,
        since the connection could go to any of them."""
        host = target.raw_host.decode("ascii")
        address = ip_literal(target.host)
        if address is not None:
            return [address]
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise FetchError(FetchError.UNREACHABLE, f"{url} did not answer: cannot resolve {host}: {exc}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in found))
        for address in addresses:
            self._check_address(url, address, host)
        return addresses

    def _check_address(self, url: str, address: IPAddress, host: str) -> None:
        name = refused_address(address, self.allow_local)
        if name:
            raise self._refusal(url, f"{host} resolves to {address}, which is special-purpose space ({name})")

    @staticmethod
    def _refusal(url: str, why: str) -> FetchError:
        return FetchError(FetchError.UNSAFE_ENDPOINT, f"refused endpoint {url}: {why}; {DEV_MODE_HINT}")

    async def _send(self, client: httpx.AsyncClient, method: str, target: httpx.URL, address: IPAddress, json,
                    headers: dict) -> httpx.Response:
        """Connect to the checked address; the Host header and TLS (SNI, certificate) still use the name."""
        request = client.build_request(
            method, target.copy_with(host=str(address)), json=json,
            headers={**headers, "Host": target.netloc.decode("ascii"), "Accept-Encoding": "identity"},
            extensions={"sni_hostname": target.raw_host.decode("ascii")})
        response = await client.send(request, stream=True)
        try:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self.max_bytes:
                    raise FetchError(FetchError.TOO_LARGE, f"{target} answered with more than {self.max_bytes} bytes")
        finally:
            await response.aclose()
        kept = [(name, value) for name, value in response.headers.multi_items() if name.lower() != "content-encoding"]
        return httpx.Response(response.status_code, headers=kept, content=bytes(body),
                              request=httpx.Request(method, target))
