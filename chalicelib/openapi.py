"""The OpenAPI 3.1 description of the node API; a test holds it to the routes app.py really has."""
from __future__ import annotations

ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict:
    reasons = {400: "malformed input", 401: "missing or unknown token", 403: "not allowed",
               404: "not found", 409: "conflicting replay", 413: "too large", 421: "misdirected",
               422: "valid JSON but unacceptable", 429: "rate limited"}
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
                     **_errors(400, 401, 403, 413, 422)}, admin=True, body=_ref("Grant")),
        "get": _op("Delegations held and granted",
                   {"200": _json({"type": "object"}, "held and granted"), **_errors(401, 403)}, admin=True)},
    "/v1/delegations/held": {"put": _op(
        "Install a chain from the root down to a delegation held by this node's key",
        {"200": _json({"type": "object"}, "installed"), **_errors(400, 401, 403, 413, 422)},
        admin=True, body={"oneOf": [_ref("Chain"), {"type": "object", "properties": {"chain": _ref("Chain")}}]})},
    "/v1/delegations/{network}/{length}": {"delete": _op(
        "Revoke a granted delegation", {"200": _json({"type": "object"}, "revoked"), **_errors(401, 403, 404)},
        admin=True, params=("network", "length"))},
    "/openapi.json": {"get": _op("This document", {"200": _json({"type": "object"}, "OpenAPI 3.1")})},
}


def openapi_document(version: str) -> dict:
    return {"openapi": "3.1.0",
            "info": {"title": "netimmune node API", "version": version,
                     "description": "Signed abuse reports routed through a referral tree (wire protocol v1)."},
            "paths": PATHS,
            "components": {"schemas": SCHEMAS,
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}
