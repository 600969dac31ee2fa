"""A thin WSGI adapter over Chalice's local gateway, so a production WSGI server runs the same app."""
from __future__ import annotations

import base64
import itertools
import json
import threading
from http import HTTPStatus
from operator import itemgetter
from urllib.parse import parse_qs, quote, urlparse

from chalice import Chalice
from chalice.config import Config
from chalice.local import (LambdaContext, LambdaEventConverter, LocalGateway, LocalGatewayException, MatchResult,
                           RouteMatcher)

MAX_BODY = 17 * 1024 * 1024
PEER_HEADER = "x-netimmune-peer"
STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


class ThreadSafeChalice(Chalice):
    """Chalice keeps the request being handled on the app object; under a threaded WSGI server each
    thread must see its own, or a POST may read another request's body. Lambda runs one at a time,
    where this changes nothing."""

    def __init__(self, *args, **kwargs):
        self.__dict__["_per_thread"] = threading.local()
        super().__init__(*args, **kwargs)

    def _thread_value(name):  # noqa: N805 (builds the two properties below)
        return property(lambda self: getattr(self._per_thread, name, None),
                        lambda self, value: setattr(self._per_thread, name, value))

    current_request = _thread_value("current_request")
    lambda_context = _thread_value("lambda_context")
    del _thread_value


class SplitRouteMatcher(RouteMatcher):
    """Chalice's route matcher with each route split once, and only the routes with as many parts as the
    path tried (no other can match), instead of every route split on every request: same order, same answers.
    Captured parameters stay percent-encoded, as API Gateway's REST API hands them over: the app decodes them."""

    def __init__(self, route_urls: list[str]):
        super().__init__(route_urls)
        self._by_length: dict[int, list[tuple[str, itemgetter, object, tuple[tuple[int, str], ...]]]] = {}
        for url in self.route_urls:
            parts = url.split("/")
            captures = tuple((index, part[1:-1]) for index, part in enumerate(parts)
                             if part.startswith("{") and part.endswith("}"))
            literal = itemgetter(*(index for index in range(len(parts)) if index not in dict(captures)))
            self._by_length.setdefault(len(parts), []).append((url, literal, literal(parts), captures))

    def match_route(self, url: str) -> MatchResult:
        # the URL is split as Chalice splits it: "//host/path" names a host, ";params" are not path
        parsed = urlparse(url)
        path, query = parsed.path, parsed.query
        query_params = parse_qs(query, keep_blank_values=True) if query else {}
        if path != "/" and path.endswith("/"):
            path = path[:-1]
        parts = path.split("/")
        for route_url, literal, expected, captures in self._by_length.get(len(parts), ()):
            if literal(parts) == expected:
                return MatchResult(route_url, {name: parts[index] for index, name in captures}, query_params)
        raise ValueError(f"No matching route found for: {url}")


def _error(status: int, code: str, message: str) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(
        {"error": {"code": code, "message": message}}).encode()


class NoRoute(LocalGatewayException):
    CODE = 404


class WSGIGateway(LocalGateway):
    """Chalice's local gateway with the split route matcher, and each request's Lambda context copied from one
    built at start: the stock gateway looks every setting up in its layered config and draws a uuid4 (a
    getrandom system call) per request. Request ids here are a random per-gateway prefix and a counter:
    unique, and shaped like a uuid."""

    def __init__(self, app: Chalice, config: Config):
        super().__init__(app, config)
        self.event_converter = LambdaEventConverter(SplitRouteMatcher(list(app.routes)), app.api.binary_types)
        timeout = config.lambda_timeout or self.MAX_LAMBDA_EXECUTION_TIME
        template = LambdaContext(config.function_name, config.lambda_memory_size, timeout * 1000)
        self._context_fields = dict(vars(template))
        self._request_id_prefix = template.aws_request_id[:24]  # "xxxxxxxx-xxxx-4xxx-yxxx-"
        self._request_numbers = itertools.count()  # next() on it is atomic under the GIL

    def _generate_lambda_event(self, method: str, path: str, headers: dict, body: bytes | None) -> dict:
        """A path no route takes is a 404 whatever the headers. The stock gateway answers API Gateway's 403
        instead, and with an Authorization header it echoes the header back (or fails on a non-ASCII one)."""
        try:
            return super()._generate_lambda_event(method, path, headers, body)
        except ValueError:
            raise NoRoute({}, b"") from None

    def _generate_lambda_context(self) -> LambdaContext:
        context = LambdaContext.__new__(LambdaContext)
        vars(context).update(self._context_fields)
        context._start_time = context._current_time_millis()
        context.aws_request_id = f"{self._request_id_prefix}{next(self._request_numbers) % 16**12:012x}"
        return context


class ChaliceWSGI:
    def __init__(self, app: Chalice, max_body: int = MAX_BODY):
        self.gateway = WSGIGateway(app, Config.create(lambda_timeout=60))
        self.max_body = max_body

    def __call__(self, environ, start_response):
        status, headers, body = self.handle(environ)
        start_response(STATUS_LINES.get(status) or f"{status} Unknown",
                       [(name, str(value)) for name, value in headers.items()]
                       + [("Content-Length", str(len(body)))])
        return [body]

    def handle(self, environ) -> tuple[int, dict, bytes]:
        path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(environ.get("PATH_INFO", "/"))
        if "?" not in path and environ.get("QUERY_STRING"):
            path += "?" + environ["QUERY_STRING"]
        headers = {key[5:].replace("_", "-").lower(): value
                   for key, value in environ.items() if key.startswith("HTTP_")}
        headers[PEER_HEADER] = environ.get("REMOTE_ADDR", "unknown")  # never what the client claims
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = environ[key]
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _error(400, "bad_request", "Content-Length is not a number")
        if length > self.max_body:
            return _error(413, "too_large", f"body of {length} bytes exceeds {self.max_body}")
        body = environ["wsgi.input"].read(length) if length else None
        try:
            response = self.gateway.handle_request(environ["REQUEST_METHOD"], path, headers, body)
        except NoRoute:
            return _error(404, "not_found", f"no route for {environ['REQUEST_METHOD']} {path}")
        except LocalGatewayException as exc:
            return exc.CODE, dict(exc.headers), exc.body or b""
        out_headers = {**response.get("headers", {})}
        for name, values in (response.get("multiValueHeaders") or {}).items():
            out_headers[name] = ", ".join(values)
        payload = response.get("body") or b""
        if response.get("isBase64Encoded"):
            payload = base64.b64decode(payload)
        elif isinstance(payload, str):
            payload = payload.encode()
        return response["statusCode"], out_headers, payload
