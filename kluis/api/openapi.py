"""The published OpenAPI 3.1 document, made to tell the truth about errors.

FastAPI documents a 422 with its own error shape for every operation with parameters; Kluis answers
bad input with a 400 problem+json (RFC 9457) instead, and every operation can also answer 401/403
(tokens), 413/431 (limits), 429 (rate limits) and 500 (as problem+json, never a stack trace). This
post-processing documents exactly that, so a client (or schemathesis) sees no undocumented status.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string", "format": "uri-reference"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
    },
    "required": ["type", "title", "status"],
}
COMMON = {
    "400": "Invalid request",
    "413": "Request body too large",
    "429": "Too many requests (see Retry-After)",
    "431": "Request headers too large",
    "500": "Internal error (no details are given)",
}
PROTECTED = ("/api/v1/records", "/api/v1/me", "/api/v1/audit")
PUBLIC = {"/api/v1/audit/jwks.json"}
AUTHENTICATED = {"401": "Missing, invalid or expired token", "403": "Not allowed"}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        components = document.setdefault("components", {})
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        }
        schemas = components.setdefault("schemas", {})
        schemas["Problem"] = PROBLEM_SCHEMA
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        for path, operations in document.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                extra = dict(COMMON)
                if operation.get("security") or path.startswith(
                    ("/api/v1/records", "/api/v1/me", "/api/v1/audit")
                ):
                    extra.update(AUTHENTICATED)
                for status, description in extra.items():
                    responses.setdefault(status, _problem(description))
                for status, response in responses.items():
                    content = response.get("content", {})
                    if status >= "400" and "application/json" in content and not content["application/json"]:
                        response["content"] = _problem(response.get("description", ""))["content"]
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
