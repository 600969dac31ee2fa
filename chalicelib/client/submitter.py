"""Delivering signed reports to the node that owns the address, following 421 referrals."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from .resolver import Resolution, ResolutionError, Resolver

MAX_REDIRECTS = 3


class DeliveryError(Exception):
    """A report the owner refused, or could not be given; `kind` says which, `message` why."""

    def __init__(self, kind: str, message: str, status: int | None = None, retry_after: int | None = None,
                 resolution: Resolution | None = None):
        super().__init__(message)
        self.kind = kind            # "no_owner" | "unreachable" | "rejected" | "rate_limited" | "resolution"
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.resolution = resolution


@dataclass(frozen=True)
class Delivery:
    endpoint: str
    status: int
    answer: dict
    resolution: Resolution


def _refusal(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error", {})
        return error.get("code", "error"), error.get("message", response.text[:200])
    except (ValueError, AttributeError):
        return "error", response.text[:200] or response.reason_phrase


class Submitter:
    def __init__(self, resolver: Resolver, http: httpx.Client | None = None):
        self.resolver = resolver
        self.http = http or resolver.http

    def owner(self, ip: str) -> Resolution:
        try:
            resolution = self.resolver.resolve(ip)
        except ResolutionError as exc:
            raise DeliveryError("resolution", f"could not find the owner of {ip}: {exc.message} "
                                f"(asked: {' → '.join(exc.hops)})") from None
        if not resolution.owned:
            raise DeliveryError("no_owner", f"no owner of {ip} is registered on netimmune "
                                f"(asked: {' → '.join(resolution.hops)})", resolution=resolution)
        return resolution

    def deliver(self, envelope: dict, resolution: Resolution | None = None) -> Delivery:
        """Send to the owner (or to `resolution`, when already known); a 421 re-routes it."""
        ip = envelope["report"]["source_identifier"]
        resolution = resolution or self.owner(ip)
        for _ in range(MAX_REDIRECTS):
            try:
                response = self.http.post(f"{resolution.endpoint}/v1/reports", json=envelope)
            except httpx.HTTPError as exc:
                raise DeliveryError("unreachable", f"the owner's node {resolution.endpoint} did not answer: {exc}",
                                    resolution=resolution) from None
            if response.status_code in (200, 202):
                return Delivery(resolution.endpoint, response.status_code, response.json(), resolution)
            if response.status_code == 421:
                resolution = self._redirected(ip, response)
                continue
            code, message = _refusal(response)
            if response.status_code == 429:
                retry = int(response.headers.get("Retry-After", "60"))
                raise DeliveryError("rate_limited", f"{resolution.endpoint} asks to slow down: {message}",
                                    429, retry, resolution)
            raise DeliveryError("rejected", f"{resolution.endpoint} refused the report ({response.status_code} "
                                f"{code}): {message}", response.status_code, resolution=resolution)
        raise DeliveryError("resolution", f"{ip}: nodes kept redirecting the report")

    def _redirected(self, ip: str, response: httpx.Response) -> Resolution:
        try:
            body = response.json()
        except ValueError:
            body = {}
        try:
            if body.get("answer") == "referral":
                return self.resolver.follow(ip, body)
        except ResolutionError as exc:
            raise DeliveryError("resolution", f"the node's referral for {ip} was refused: {exc.message}") from None
        self.resolver.forget(ip)
        return self.owner(ip)

    def deliver_batch(self, endpoint: str, envelopes: Sequence[dict]) -> list[dict]:
        """One POST of up to 1,000 envelopes to one node; one result per envelope, in order."""
        try:
            response = self.http.post(f"{endpoint}/v1/reports/batch", json={"reports": list(envelopes)})
        except httpx.HTTPError as exc:
            raise DeliveryError("unreachable", f"{endpoint} did not answer: {exc}") from None
        if response.status_code != 200:
            code, message = _refusal(response)
            retry = int(response.headers.get("Retry-After", "0") or 0) or None
            raise DeliveryError("rate_limited" if response.status_code == 429 else "rejected",
                                f"{endpoint} refused the batch ({response.status_code} {code}): {message}",
                                response.status_code, retry)
        return response.json()["results"]
