"""Delivering signed reports to the node that owns the address, following 421 referrals."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

from .fetch import Fetcher, FetchError, json_object
from .resolver import Resolution, ResolutionError, Resolver

MAX_REDIRECTS = 3
DEFAULT_RETRY_AFTER = 60      # seconds, when a 429 gives no usable Retry-After
DELIVERY_KINDS = {FetchError.UNREACHABLE: "unreachable", FetchError.TOO_LARGE: "rejected",
                  FetchError.UNSAFE_ENDPOINT: "unsafe_endpoint"}


class DeliveryError(Exception):
    """A report the owner refused, or could not be given; `kind` says which, `message` why."""

    def __init__(self, kind: str, message: str, status: int | None = None, retry_after: int | None = None,
                 resolution: Resolution | None = None):
        super().__init__(message)
        self.kind = kind  # "no_owner" | "unreachable" | "rejected" | "rate_limited" | "resolution" | "unsafe_endpoint"
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


def refusal(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of an error answer; an HTML error page (a proxy's, a web server's) is named, not printed."""
    error = (json_object(response) or {}).get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error.get("code", "error")), error["message"]
    if response.headers.get("content-type", "").split(";")[0].strip().lower() == "text/html":
        return "error", f"an HTML page ({response.reason_phrase}), not a netimmune answer"
    return "error", response.text[:200] or response.reason_phrase


def retry_after(response: httpx.Response, now: datetime | None = None) -> int | None:
    """Seconds to wait from a Retry-After header, which RFC 9110 allows as seconds or as an HTTP date;
    None when it is absent or neither."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isascii() and value.isdigit():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:      # "-0000": an HTTP date is always UTC
        when = when.replace(tzinfo=timezone.utc)
    return max(0, round((when - (now or datetime.now(timezone.utc))).total_seconds()))


class Submitter:
    def __init__(self, resolver: Resolver, http: Fetcher | None = None):
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
                response = self.http.post(f"{resolution.endpoint}/v1/reports", envelope)
            except FetchError as exc:
                raise DeliveryError(DELIVERY_KINDS[exc.kind], f"could not deliver to the owner's node: {exc.message}",
                                    resolution=resolution) from None
            if response.status_code in (200, 202):
                answer = json_object(response)
                if answer is None:
                    raise DeliveryError("rejected", f"{resolution.endpoint} answered {response.status_code} but "
                                        "not with a JSON object; is it a netimmune node?", response.status_code,
                                        resolution=resolution)
                return Delivery(resolution.endpoint, response.status_code, answer, resolution)
            if response.status_code == 421:
                resolution = self._redirected(ip, response)
                continue
            code, message = refusal(response)
            if response.status_code == 429:
                retry = retry_after(response)
                retry = DEFAULT_RETRY_AFTER if retry is None else retry
                raise DeliveryError("rate_limited", f"{resolution.endpoint} asks to slow down for {retry} s: "
                                    f"{message}", 429, retry, resolution)
            raise DeliveryError("rejected", f"{resolution.endpoint} refused the report ({response.status_code} "
                                f"{code}): {message}", response.status_code, resolution=resolution)
        raise DeliveryError("resolution", f"{ip}: nodes kept redirecting the report")

    def _redirected(self, ip: str, response: httpx.Response) -> Resolution:
        body = json_object(response) or {}
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
            response = self.http.post(f"{endpoint}/v1/reports/batch", {"reports": list(envelopes)})
        except FetchError as exc:
            raise DeliveryError(DELIVERY_KINDS[exc.kind], exc.message) from None
        if response.status_code != 200:
            code, message = refusal(response)
            raise DeliveryError("rate_limited" if response.status_code == 429 else "rejected",
                                f"{endpoint} refused the batch ({response.status_code} {code}): {message}",
                                response.status_code, retry_after(response))
        results = (json_object(response) or {}).get("results")
        if not (isinstance(results, list) and len(results) == len(envelopes) and all(map(_is_batch_result, results))):
            raise DeliveryError("rejected", f"{endpoint} answered the batch without one result per report; "
                                "is it a netimmune node?", response.status_code)
        return results


def _is_batch_result(item) -> bool:
    return isinstance(item, dict) and isinstance(item.get("status"), int) and isinstance(item.get("answer"), dict)
