"""The OpenAPI 3.1 description of the node API; a test holds it to the routes app.py really has."""
from __future__ import annotations

from .core.cases import STATUSES

ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict:
    reasons = {400: "malformed input", 401: "missing or unknown token", 403: "not allowed",
               404: "not found", 409: "conflicts with what is stored (a replayed id, another holder's grant)", 413: "too large", 421: "misdirected",
               415: "not application/json", 422: "valid JSON but unacceptable", 429: "rate limited"}
    return {str(s): _json(ERROR, reasons[s]) for s in statuses}


def _op(summary: str, responses: dict, *, admin: bool = False, body: dict | None = None,
        params: tuple[str, ...] = ()) -> dict:
    op: dict = {"summary": summary, "responses": responses}
    if admin:
        op["security"] = [{"bearer": []}]
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                            for p in params]
    return op


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


SIGNED = {"type": "object", "required": ["alg", "key", "sig"], "properties": {
    "alg": {"const": "ed25519"}, "key": {"type": "string", "pattern": "^ed25519:"},
    "sig": {"type": "string"}}}

SCHEMAS = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
    "Signature": SIGNED,
    "Delegation": {"type": "object", "required": ["delegation", "signature"], "properties": {
        "delegation": {"type": "object", "required": ["prefix", "holder", "endpoint", "issuer", "serial",
                                                       "not_before", "not_after"],
                       "properties": {"prefix": {"type": "string"}, "holder": {"type": "string"},
                                      "endpoint": {"type": "string", "format": "uri"},
                                      "issuer": {"type": "string"}, "serial": {"type": "integer"},
                                      "not_before": {"type": "string", "format": "date-time"},
                                      "not_after": {"type": "string", "format": "date-time"}}},
        "signature": _ref("Signature")}},
    "Chain": {"type": "array", "items": _ref("Delegation"), "maxItems": 8},
    "Referral": {"type": "object", "required": ["answer", "ip", "ttl"], "properties": {
        "answer": {"enum": ["authoritative", "referral", "none"]}, "ip": {"type": "string"},
        "ttl": {"type": "integer"}, "prefix": {"type": "string"}, "endpoint": {"type": "string"},
        "holder": {"type": "string"}, "chain": _ref("Chain")}},
    "NodeInfo": {"type": "object", "properties": {
        "key": {"type": "string"}, "version": {"type": "string"}, "software": {"type": "string"},
        "root": {"type": "boolean"}, "trust_anchor": {"type": "string"},
        "chains": {"type": "array", "items": _ref("Chain")}}},
    "Envelope": {"type": "object", "required": ["report", "signature"], "properties": {
        "report": _ref("Report"), "signature": _ref("Signature"),
        "credentials": {"type": "array", "maxItems": 10, "items": {"type": "object"}}}},
    "Report": {"type": "object", "additionalProperties": False,
               "description": "X-ARF v4 core fields; the category is the tag netimmune:<slug>, and category, type, "
                              "service (open-* categories) and any rsit: tag must be the ones of that category",
               "required": ["xarf_version", "report_id", "timestamp", "reporter", "source_identifier",
                            "category", "type", "tags"],
               "properties": {"xarf_version": {"const": "4.0.0"}, "report_id": {"type": "string", "format": "uuid"},
                              "timestamp": {"type": "string", "format": "date-time"},
                              "reporter": {"type": "object", "properties": {
                                  "org": {"type": "string"}, "contact": {"type": "string"},
                                  "domain": {"type": "string"}}},
                              "source_identifier": {"type": "string"},
                              "source_port": {"type": "integer", "minimum": 0, "maximum": 65535},
                              "category": {"type": "string"}, "type": {"type": "string"},
                              "service": {"type": "string"}, "description": {"type": "string"},
                              "evidence": {"type": "array", "items": {"type": "object", "required": [
                                  "content_type", "payload", "hash"], "properties": {
                                  "content_type": {"type": "string"}, "payload": {"type": "string"},
                                  "hash": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
                                  "description": {"type": "string"}}}},
                              "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                              "tags": {"type": "array", "items": {"type": "string"}}}},
    "Accepted": {"type": "object", "properties": {
        "report_id": {"type": "string"}, "status": {"type": "string"}, "ip": {"type": "string"},
        "category": {"type": "string"}, "received": {"type": "string"}, "rank": {"type": "string"},
        "credentials_ignored": {"type": "string"}}},
    "Case": {"type": "object", "properties": {
        "ip": {"type": "string"}, "category": {"type": "string"},
        "status": {"enum": list(STATUSES)},
        "score": {"type": "number"}, "reports": {"type": "integer"},
        "reporters": {"type": "array", "items": {"type": "object"}}, "verification": {}}},
    "Grant": {"type": "object", "required": ["prefix", "holder", "endpoint"], "properties": {
        "prefix": {"type": "string"}, "holder": {"type": "string"}, "endpoint": {"type": "string"},
        "days": {"type": "integer", "minimum": 1, "maximum": 3660}}},
}

PATHS = {
    "/v1/node": {"get": _op("Node key, held chains, version", {"200": _json(_ref("NodeInfo"), "the node")})},
    "/v1/refer/{ip}": {"get": _op(
        "Who takes reports for ip: this node (authoritative), a child (referral) or nobody here",
        {"200": _json(_ref("Referral"), "authoritative or referral"),
         "404": _json(_ref("Referral"), "answer none: outside this node's space"), **_errors(400, 422)},
        params=("ip",))},
    "/v1/delegations": {
        "post": _op("Grant a sub-delegation; returns it with the chain from the root",
                    {"201": _json({"type": "object", "properties": {"delegation": _ref("Delegation"),
                                                                    "chain": _ref("Chain")}}, "granted"),
                     **_errors(400, 401, 403, 409, 413, 415, 422)}, admin=True, body=_ref("Grant")),
        "get": _op("Delegations held and granted",
                   {"200": _json({"type": "object"}, "held and granted"), **_errors(401, 403)}, admin=True)},
    "/v1/delegations/held": {"put": _op(
        "Install a chain from the root down to a delegation held by this node's key",
        {"200": _json({"type": "object"}, "installed"), **_errors(400, 401, 403, 413, 415, 422)},
        admin=True, body={"oneOf": [_ref("Chain"), {"type": "object", "properties": {"chain": _ref("Chain")}}]})},
    "/v1/delegations/{network}/{length}": {"delete": _op(
        "Revoke a granted delegation", {"200": _json({"type": "object"}, "revoked"), **_errors(400, 401, 403, 404)},
        admin=True, params=("network", "length"))},
    "/v1/reports": {"post": _op(
        "Submit one signed report",
        {"202": _json(_ref("Accepted"), "accepted and stored"),
         "200": _json(_ref("Accepted"), "an exact re-send: the first answer again"),
         "421": _json({"allOf": [ERROR, _ref("Referral")]}, "misdirected: the referral to follow"),
         **_errors(400, 401, 409, 413, 415, 422, 429)}, body=_ref("Envelope"))},
    "/v1/reports/batch": {"post": _op(
        "Submit up to 1,000 signed reports; one result per item, in order",
        {"200": _json({"type": "object", "properties": {"results": {"type": "array", "items": {
            "type": "object", "properties": {"index": {"type": "integer"}, "status": {"type": "integer"},
                                             "answer": {"type": "object"}}}}}},
            "one result per envelope, each with its own status"), **_errors(400, 413, 415, 429)},
        body={"type": "object", "required": ["reports"], "properties": {
            "reports": {"type": "array", "maxItems": 1000, "items": _ref("Envelope")}}})},
    "/v1/reports/{report_id}": {"get": _op(
        "Status of a report's case: received, verifying, confirmed, refuted, inconclusive or resolved",
        {"200": _json({"type": "object"}, "status, never the evidence"), **_errors(404)}, params=("report_id",))},
    "/v1/cases": {"get": {**_op("Cases with score, reporters and verification",
                                {"200": _json({"type": "object", "properties": {"cases": {
                                    "type": "array", "items": _ref("Case")}}}, "cases"), **_errors(400, 401, 403)},
                                admin=True),
                          "parameters": [{"name": "status", "in": "query", "schema": {"enum": list(STATUSES)}}]}},
    "/v1/cases/{ip}": {"get": _op("Every case of one address, with its reports and evidence",
                                  {"200": _json({"type": "object"}, "cases"), **_errors(400, 401, 403, 404)},
                                  admin=True, params=("ip",))},
    "/v1/cases/{ip}/{category}/resolve": {"post": _op(
        "Mark a case fixed", {"200": _json({"type": "object"}, "resolved"), **_errors(400, 401, 403, 404)},
        admin=True, params=("ip", "category"))},
    "/v1/canary/{nonce}": {"get": _op(
        "Canary target of verification scans: a request arriving here through a suspect proves it relays",
        {"200": {"description": "hit recorded", "content": {"text/plain": {"schema": {"type": "string"}}}},
         **_errors(404)}, params=("nonce",))},
    "/v1/blocklist": {"get": {**_op(
        "Blocked addresses for firewalls: text (one address or prefix per line), JSON with reason, score and "
        "expiry, or an nftables set file; conditional GET with ETag",
        {"200": {"description": "the blocklist", "content": {"text/plain": {"schema": {"type": "string"}},
                                                             "application/json": {"schema": {"type": "object"}}}},
         "304": {"description": "unchanged since the ETag sent in If-None-Match"},
         **_errors(400, 401, 403)}, admin=True),
        "parameters": [
            {"name": "format", "in": "query", "schema": {"enum": ["text", "json", "nft"], "default": "text"}},
            {"name": "category", "in": "query", "schema": {"type": "string"}, "description": "comma-separated"},
            {"name": "min_score", "in": "query", "schema": {"type": "number"}},
            {"name": "aggregate", "in": "query", "schema": {"enum": ["64"]},
             "description": "IPv6 addresses as their /64"}]}},
    "/openapi.json": {"get": _op("This document", {"200": _json({"type": "object"}, "OpenAPI 3.1")})},
}


def openapi_document(version: str) -> dict:
    return {"openapi": "3.1.0",
            "info": {"title": "netimmune node API", "version": version,
                     "description": "Signed abuse reports routed through a referral tree (wire protocol v1)."},
            "paths": PATHS,
            "components": {"schemas": SCHEMAS,
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}
