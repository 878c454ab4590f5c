"""Pure ASGI middleware (cheap on the hot path): request id, trace context, security headers,
``API-Version``, and request limits (body size, header size) answered as problem+json."""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from audit.schemas import TraceContext, random_hex_id
from kluis.api.limits import MAX_JSON_DEPTH, JsonDepthScanner
from kluis.observability import current_trace_id

API_VERSION = "1.0.0"
MAX_HEADER_BYTES = 16 * 1024

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
API_CSP = b"default-src 'none'; frame-ancestors 'none'"
# Pages: own origin only; no inline script; inline style attributes are not used either.
PAGE_CSP = (
    b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


def _problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    rid: str,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[dict[str, Any], bytes]:
    body = json.dumps(
        {
            "type": "urn:kluis:problem:" + code,
            "title": title,
            "status": status,
            "detail": detail,
            "instance": f"urn:kluis:request:{rid}",
            "request_id": rid,
        }
    ).encode()
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]
    headers += extra_headers or []
    return {"type": "http.response.start", "status": status, "headers": headers}, body


class KluisMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, hsts: bool = True) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.hsts = hsts
        security = SECURITY_HEADERS if hsts else SECURITY_HEADERS[:1] + SECURITY_HEADERS[2:]
        # The headers every response of a kind gets (only the request id differs per request),
        # built once: pages, the other machine endpoints, and the versioned API.
        no_store = (b"cache-control", b"no-store")
        self._page_headers = (*security, no_store, (b"content-security-policy", PAGE_CSP))
        self._machine_headers = (*security, no_store, (b"content-security-policy", API_CSP))
        self._api_headers = (*self._machine_headers, (b"api-version", API_VERSION.encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = random_hex_id(8)  # a correlation id, not a secret (see audit.schemas)
        scope["kluis.request_id"] = rid
        scope.setdefault("state", {})["request_id"] = rid
        # One pass over the request headers for what this middleware needs of them.
        header_bytes, traceparent, declared, content_type = 0, None, None, b""
        for name, value in scope.get("headers", []):
            header_bytes += len(name) + len(value)
            if name == b"traceparent":
                traceparent = value
            elif name == b"content-length":
                declared = value
            elif name == b"content-type":
                content_type = value
        # One trace context per request, made here: the audit entries (through deps.trace_of) and
        # the log lines (through the context variable) carry the same trace id.
        trace = TraceContext.from_traceparent(traceparent.decode("latin-1") if traceparent else None)
        scope["kluis.trace"] = trace
        trace_token = current_trace_id.set(trace.trace_id)
        try:
            await self._handle(scope, receive, send, rid, header_bytes, declared, content_type)
        finally:
            current_trace_id.reset(trace_token)

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        rid: str,
        header_bytes: int,
        declared: bytes | None,
        content_type: bytes,
    ) -> None:
        path: str = scope.get("path", "")
        if path.startswith("/api/"):
            added = self._api_headers
        elif path.startswith(("/oauth/", "/.well-known/", "/health", "/metrics")):
            added = self._machine_headers
        else:
            added = self._page_headers
        request_id = (b"x-request-id", rid.encode())

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}  # what the endpoint set itself stays
                headers += [(k, v) for k, v in added if k not in present]
                if b"x-request-id" not in present:
                    headers.append(request_id)
                message["headers"] = headers
            await send(message)

        if header_bytes > MAX_HEADER_BYTES:
            await self._reject(
                send_with_headers,
                431,
                "headers-too-large",
                "Request headers too large",
                "the request headers are too large",
                rid,
            )
            return
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await self._reject(
                send_with_headers,
                413,
                "payload-too-large",
                "Request body too large",
                f"the request body may be at most {self.max_body_bytes} bytes",
                rid,
            )
            return

        received = 0
        limit = self.max_body_bytes
        # Media types are case-insensitive (RFC 9110 §8.3.1), and FastAPI parses "Application/JSON"
        # as JSON: the check must see it too.
        scanner = JsonDepthScanner() if b"json" in content_type.lower() else None

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > limit:
                    raise BodyTooLargeError
                if scanner is not None and scanner.feed(chunk) > MAX_JSON_DEPTH:
                    raise JsonTooDeepError
            return message

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except BodyTooLargeError:
            await self._reject(
                send_with_headers,
                413,
                "payload-too-large",
                "Request body too large",
                f"the request body may be at most {limit} bytes",
                rid,
            )
        except JsonTooDeepError:
            await self._reject(
                send_with_headers,
                400,
                "json-too-deep",
                "Invalid request",
                f"JSON may be nested at most {MAX_JSON_DEPTH} levels deep",
                rid,
            )

    @staticmethod
    async def _reject(send: Send, status: int, code: str, title: str, detail: str, rid: str) -> None:
        start, body = _problem(status, code, title, detail, rid)
        await send(start)
        await send({"type": "http.response.body", "body": body})


class BodyTooLargeError(HTTPException):
    """An HTTPException so that FastAPI's body parsing passes it through unchanged."""

    def __init__(self) -> None:
        super().__init__(413, "the request body is too large")


class JsonTooDeepError(HTTPException):
    def __init__(self) -> None:
        super().__init__(400, f"JSON may be nested at most {MAX_JSON_DEPTH} levels deep")
