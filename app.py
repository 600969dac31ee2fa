"""The node's HTTP API (DESIGN.md §3): each route parses, calls one core function, renders."""
from __future__ import annotations

import functools
import json
import logging
import os
from urllib.parse import unquote

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from chalice import Response

from chalicelib import __version__, observability
from chalicelib.adapters.job_records import JOB_IDEMPOTENCY
from chalicelib.adapters.wsgi import PEER_HEADER, ThreadSafeChalice
from chalicelib.core import blocklist, cases, delegations, intake, referral
from chalicelib.core.errors import BadRequest, NodeError, PayloadTooLarge
from chalicelib.core.ports import Role
from chalicelib.core.tokens import require_role
from chalicelib.openapi import openapi_document
from chalicelib.settings import Settings
from chalicelib.wiring import NodeHolder, build_node, run_job

app = ThreadSafeChalice(app_name="netimmune")
# Every answer is JSON or text: with no binary media types nothing is base64-encoded, and each request is
# spared Chalice's comparisons of its content types against the sixteen defaults.
app.api.binary_types = []
current = NodeHolder(lambda: build_node(Settings.from_env()))
log = logging.getLogger("netimmune.api")
observability.tracer()  # built on import: a Lambda loads the X-Ray SDK in its init phase, not in a request


def metrics_namespace() -> str | None:
    node = current.built()
    return node.settings.metrics_namespace if node else None


# Chalice answers a wrong method or content type itself, before any view, with {"Code": …, "Message": …}
CHALICE_ERROR_CODES = {"MethodNotAllowedError": "method_not_allowed", "UnsupportedMediaType": "unsupported_media_type",
                       "BadRequest": "bad_request"}


def in_error_shape(response: Response) -> Response:
    """Chalice's own refusals in the JSON error shape of DESIGN.md §3, like every other refusal."""
    body = response.body
    if type(body) is dict and "Code" in body:
        response.body = json.dumps({"error": {"code": CHALICE_ERROR_CODES.get(body["Code"], "error"),
                                              "message": body.get("Message", "")}})
        response.headers["Content-Type"] = "application/json"
    return response


@app.middleware("http")
def observe_request(request, get_response):
    """Each request traced, logged and counted, its metrics flushed when it ends (chalicelib/observability.py);
    the one middleware, so it also puts Chalice's own refusals in the error shape."""
    return observability.observe_request(request, lambda req: in_error_shape(get_response(req)), metrics_namespace)


@app.middleware("sqs")
def observe_invocation(event, get_response):
    """Each batch of jobs traced, its metrics flushed when it ends; the app has no other kind of handler."""
    return observability.observe_invocation(event, get_response, metrics_namespace)

MAX_JSON_BODY = 1024 * 1024
MAX_REPORT_BODY = 512 * 1024
MAX_BATCH_BODY = 16 * 1024 * 1024


def json_response(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(body=json.dumps(body), status_code=status,
                    headers={"Content-Type": "application/json", **(headers or {})})


def api(path: str, methods: tuple[str, ...] = ("GET",)):
    """A route whose refusals become the JSON errors of DESIGN.md §3, never a 5xx."""
    def register(view):
        @functools.wraps(view)
        def handle(**params):
            try:  # API Gateway's REST API hands path parameters over still percent-encoded, as the adapter does
                return view(**{name: unquote(value) for name, value in params.items()})
            except NodeError as error:
                return json_response(error.to_json(), error.status, error.headers)
            except Exception:  # an unexpected fault: logged with its trace, answered without it
                log.exception("unhandled error in %s", path)
                return json_response({"error": {"code": "internal", "message": "internal error"}}, 500)
        # only a request with a body has its content type checked (Chalice checks every one by default)
        content_types = ["application/json"] if {"POST", "PUT"} & set(methods) else []
        return app.route(path, methods=list(methods), content_types=content_types)(handle)
    return register


def not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


def request_json(limit: int = MAX_JSON_BODY):
    raw = app.current_request.raw_body or b""
    if len(raw) > limit:
        raise PayloadTooLarge(f"body of {len(raw)} bytes exceeds {limit}")
    try:
        return json.loads(raw, parse_constant=not_json)  # Python's json would take NaN and Infinity
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested deeper than Python goes
        raise BadRequest("body is not valid JSON", code="bad_json") from None


def require(*roles: str) -> None:
    require_role(current.get().tokens, app.current_request.headers.get("authorization"), *roles)


def client_address() -> str:
    """The peer's address: from the WSGI adapter locally, from API Gateway's request context on AWS."""
    request = app.current_request
    if current.get().settings.trust_peer_header and request.headers.get(PEER_HEADER):
        return request.headers[PEER_HEADER]
    return (request.context.get("identity") or {}).get("sourceIp", "unknown")


@api("/v1/node")
def node_info():
    node = current.get()
    return json_response({"key": node.key.public, "version": "v1", "software": f"netimmune {__version__}",
                          "root": node.is_root, "trust_anchor": node.anchor,
                          "chains": [m.chain for m in node.delegations.list_delegations(Role.HELD)]})


@api("/v1/refer/{ip}")
def refer(ip):
    answer = referral.refer(current.get(), ip)
    return Response(body=answer.to_json_text(), status_code=404 if answer.answer is referral.Answer.NONE else 200,
                    headers={"Content-Type": "application/json"})


@api("/v1/delegations", methods=("POST",))
def grant_delegation():
    require()
    body = request_json()
    if not isinstance(body, dict):
        raise BadRequest("expected an object with prefix, holder, endpoint and optionally days")
    chain = delegations.grant(current.get(), body.get("prefix"), body.get("holder"), body.get("endpoint"),
                              body.get("days"))
    return json_response({"delegation": chain[-1], "chain": chain}, 201)


@api("/v1/delegations")
def list_delegations():
    require()
    return json_response(delegations.list_delegations(current.get()))


@api("/v1/delegations/held", methods=("PUT",))
def install_delegation():
    require()
    leaf = delegations.install(current.get(), request_json())
    return json_response({"installed": str(leaf.prefix), "serial": leaf.serial})


@api("/v1/delegations/{network}/{length}", methods=("DELETE",))
def revoke_delegation(network, length):
    require()
    delegations.revoke(current.get(), f"{network}/{length}")
    return json_response({"revoked": f"{network}/{length}"})


@api("/v1/reports", methods=("POST",))
def submit_report():
    node = current.get()
    intake.limit_client(node, client_address())
    answer = intake.submit(node, [request_json(MAX_REPORT_BODY)])[0]
    return json_response(answer.body, answer.status, answer.headers)


@api("/v1/reports/batch", methods=("POST",))
def submit_batch():
    node = current.get()
    intake.limit_client(node, client_address())
    answers = intake.submit(node, intake.parse_batch(request_json(MAX_BATCH_BODY)))
    return json_response({"results": [{"index": i, "status": a.status, "answer": a.body}
                                      for i, a in enumerate(answers)]})


@api("/v1/reports/{report_id}")
def report_status(report_id):
    return json_response(cases.report_status(current.get(), report_id))


@api("/v1/cases")
def list_cases():
    require("reader")
    status = (app.current_request.query_params or {}).get("status")
    return json_response({"cases": cases.list_cases(current.get(), status)})


@api("/v1/cases/{ip}")
def cases_for_address(ip):
    require("reader")
    return json_response({"cases": cases.cases_for(current.get(), ip)})


@api("/v1/cases/{ip}/{category}/resolve", methods=("POST",))
def resolve_case(ip, category):
    require("reader")
    return json_response(cases.resolve(current.get(), ip, category))


@api("/v1/canary/{nonce}")
def canary(nonce):
    node = current.get()
    if not node.verifications.record_canary_hit(nonce, client_address(), node.clock.now()):
        return json_response({"error": {"code": "not_found", "message": "no such canary"}}, 404)
    return Response(body=f"netimmune canary {nonce}\n", status_code=200, headers={"Content-Type": "text/plain"})


@api("/v1/blocklist")
def get_blocklist():
    require("appliance")
    feed = blocklist.feed(current.get(), blocklist.FeedQuery.parse(app.current_request.query_params or {}))
    if feed.unchanged_for(app.current_request.headers.get("if-none-match")):
        return Response(body="", status_code=304, headers={"ETag": feed.etag})
    return Response(body=feed.body, status_code=200, headers={"Content-Type": feed.content_type, "ETag": feed.etag,
                                                              "Cache-Control": "no-cache"})


@api("/openapi.json")
def openapi():
    return json_response(openapi_document(__version__))


batch = BatchProcessor(event_type=EventType.SQS)


def handle_job_record(record: SQSRecord) -> None:
    with observability.observe_job(record.message_id):
        run_job(current.get(), json.loads(record.body))


# One job per invocation: a verification may take most of the function's time (a host dropping every probe), and
# a batch cut off by the timeout would come back whole, each of its jobs a receive nearer the dead letters
@app.on_sqs_message(queue=os.environ.get("NETIMMUNE_VERIFY_QUEUE", "netimmune-verify"), batch_size=1)
def verify_worker(event):
    """Background jobs from SQS, and from the local worker in the same event shape: one code path."""
    JOB_IDEMPOTENCY.register_lambda_context(event.context)
    return process_partial_response(event=event.to_dict(), record_handler=handle_job_record, processor=batch,
                                    context=event.context)
