"""Endorsements: a delegation holder lends its rank (NOC, trusted) to a reporter key."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .delegation import validate_chain
from .encoding import EncodingError, format_time, parse_time
from .keys import InvalidKey, KeyPair, parse_public_key
from .signing import sign_object, signature_problem

ENDORSED_RANKS = ("noc", "trusted")
MAX_CREDENTIALS = 10   # signed documents an envelope may carry as credentials (a chain of 8 and an endorsement fit)
FIELDS = ("reporter", "org", "rank", "issuer", "not_after")


@dataclass(frozen=True)
class Standing:
    """What a report's credentials prove about its reporter: a rank, and who vouched for it."""

    rank: str = "anonymous"
    org: str | None = None
    endorsed_by: str | None = None
    problem: str | None = None       # why credentials were present but did not count


def issue_endorsement(issuer: KeyPair, reporter: str, org: str, rank: str, not_after: datetime) -> dict:
    if rank not in ENDORSED_RANKS:
        raise ValueError(f"rank must be one of {', '.join(ENDORSED_RANKS)}")
    body = {"reporter": reporter, "org": org, "rank": rank, "issuer": issuer.public,
            "not_after": format_time(not_after)}
    return {"endorsement": body, "signature": sign_object(body, issuer)}


def _endorsement_problem(document: Any, reporter: str, now: datetime) -> str | None:
    body = document.get("endorsement")
    if not isinstance(body, dict) or set(body) != set(FIELDS) or set(document) != {"endorsement", "signature"}:
        return f"an endorsement has exactly the fields {', '.join(FIELDS)} and a signature"
    if body["rank"] not in ENDORSED_RANKS or not isinstance(body["org"], str):
        return f"endorsement rank must be one of {', '.join(ENDORSED_RANKS)}"
    try:
        parse_public_key(body["issuer"])
        expires = parse_time(body["not_after"])
    except (InvalidKey, EncodingError) as exc:
        return f"endorsement: {exc}"
    if body["reporter"] != reporter:
        return "the endorsement names another reporter key"
    if now > expires:
        return f"the endorsement expired at {body['not_after']}"
    return signature_problem(body, document["signature"], signer=body["issuer"])


def evaluate_credentials(credentials: Sequence[Any], reporter: str, anchor: str, now: datetime) -> Standing:
    """An endorsement counts when its issuer holds the last delegation of a chain valid from the anchor."""
    if not credentials:
        return Standing()
    chain = [c for c in credentials if isinstance(c, dict) and "delegation" in c]
    endorsements = [c for c in credentials if isinstance(c, dict) and "endorsement" in c]
    if len(endorsements) != 1 or len(chain) + 1 != len(credentials):
        return Standing(problem="credentials are a chain of delegations and one endorsement")
    problem = _endorsement_problem(endorsements[0], reporter, now)
    if problem:
        return Standing(problem=problem)
    verdict = validate_chain(chain, anchor, now)
    if not verdict.ok:
        return Standing(problem=f"endorser's chain: {verdict.explain()}")
    body = endorsements[0]["endorsement"]
    if verdict.leaf.holder != body["issuer"]:
        return Standing(problem="the endorsement is not signed by the holder at the end of the chain")
    return Standing(rank=body["rank"], org=body["org"], endorsed_by=body["issuer"])
