"""The refusals a node can answer with; each carries the HTTP status of DESIGN.md §3 and a stable code."""
from __future__ import annotations


class NodeError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, body: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.body = body            # extra top-level fields, e.g. the referral of a 421
        self.headers = headers or {}

    def to_json(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}, **(self.body or {})}


class BadRequest(NodeError):
    status, code = 400, "bad_request"


class Unauthorized(NodeError):
    status, code = 401, "unauthorized"


class Forbidden(NodeError):
    status, code = 403, "forbidden"


class NotFound(NodeError):
    status, code = 404, "not_found"


class Conflict(NodeError):
    status, code = 409, "conflict"


class PayloadTooLarge(NodeError):
    status, code = 413, "too_large"


class Misdirected(NodeError):
    status, code = 421, "misdirected"


class Unprocessable(NodeError):
    status, code = 422, "unprocessable"


class TooManyRequests(NodeError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, retry_after: int):
        seconds = max(1, int(retry_after))
        # in the body too: a batch answers each report on its own, where no header can carry it
        super().__init__(message, body={"retry_after": seconds}, headers={"Retry-After": str(seconds)})
        self.retry_after = seconds
