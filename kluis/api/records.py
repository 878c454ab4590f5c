"""The department data API: ``/api/v1/records``. The resident always comes from the token's grant."""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, StringConstraints, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from kluis.api.deps import services_of
from kluis.api.dpop import AccessDep, department_access_fetching
from vault.schemas import RecordContent, RecordSummary

router = APIRouter(prefix="/api/v1", tags=["records"])

CATEGORY_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"
CATEGORY_MAX = 64
CATEGORY_DESCRIPTION = "Category code, e.g. `inkomen`."
FIELDS_PATTERN = r"^[A-Za-z0-9_,.\- ]*$"
FIELDS_MAX = 1000
FIELDS_DESCRIPTION = (
    "Comma-separated top-level fields to return (data minimisation); recorded in the audit entry."
)
CategoryPath = Annotated[
    str, Path(description=CATEGORY_DESCRIPTION, pattern=CATEGORY_PATTERN, max_length=CATEGORY_MAX)
]
PROBLEM: dict[str, Any] = {"model": None, "content": {"application/problem+json": {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid request", **PROBLEM},
    401: {"description": "Missing, invalid or expired access token", **PROBLEM},
    403: {"description": "The grant does not cover this request", **PROBLEM},
    404: {"description": "No such record", **PROBLEM},
    413: {"description": "Request body too large", **PROBLEM},
    429: {"description": "Rate limit reached", **PROBLEM},
}


class RecordSummaryPublic(BaseModel):
    category: str
    version: int
    updated_at: datetime
    source: str

    @classmethod
    def of(cls, summary: RecordSummary) -> RecordSummaryPublic:
        return cls(
            category=summary.category,
            version=summary.version,
            updated_at=summary.updated_at,
            source=summary.source,
        )


class RecordList(BaseModel):
    items: list[RecordSummaryPublic]


class RecordPublic(BaseModel):
    category: str
    version: int
    updated_at: datetime
    source: str
    data: dict[str, Any] = Field(description="The record, as validated against the category's JSON Schema.")

    @classmethod
    def of(cls, content: RecordContent) -> RecordPublic:
        return cls(
            category=content.category,
            version=content.version,
            updated_at=content.updated_at,
            source=content.source,
            data=content.data,
        )


class RecordBody(TypedDict):
    """``RecordPublic`` as a dict, for serialising the hot path's answer without building a model
    (the same JSON, half the cost; compared with the declared response model in the tests)."""

    category: str
    version: int
    updated_at: datetime
    source: str
    data: dict[str, Any]


RECORD_BODY_JSON = TypeAdapter(RecordBody)


def _fields(fields: str | None) -> tuple[str, ...] | None:
    if fields is None:
        return None
    return tuple(sorted({f.strip() for f in fields.split(",") if f.strip()}))


FieldsQuery = Annotated[
    str | None, Query(description=FIELDS_DESCRIPTION, max_length=FIELDS_MAX, pattern=FIELDS_PATTERN)
]

# The hot path reads its two parameters itself (see read_record); these check them exactly as
# FastAPI would check CategoryPath and FieldsQuery, and the OpenAPI document says the same.
_CATEGORY = TypeAdapter(Annotated[str, StringConstraints(pattern=CATEGORY_PATTERN, max_length=CATEGORY_MAX)])
_FIELDS = TypeAdapter(Annotated[str, StringConstraints(pattern=FIELDS_PATTERN, max_length=FIELDS_MAX)])
READ_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "category",
        "in": "path",
        "required": True,
        "schema": {
            "type": "string",
            "maxLength": CATEGORY_MAX,
            "pattern": CATEGORY_PATTERN,
            "title": "Category",
        },
        "description": CATEGORY_DESCRIPTION,
    },
    {
        "name": "fields",
        "in": "query",
        "required": False,
        "schema": {
            "anyOf": [
                {"type": "string", "maxLength": FIELDS_MAX, "pattern": FIELDS_PATTERN},
                {"type": "null"},
            ],
            "title": "Fields",
        },
        "description": FIELDS_DESCRIPTION,
    },
]


# The same constraints as plain regular expressions, for the common case of valid parameters
# (``fullmatch`` anchors like pydantic's patterns: no trailing newline slips through); pydantic
# still checks anything these refuse, so the errors are its own.
_CATEGORY_OK = re.compile(CATEGORY_PATTERN[1:-1])
_FIELDS_OK = re.compile(FIELDS_PATTERN[1:-1])


def _plainly_valid(category: str, fields: str | None) -> bool:
    return (
        len(category) <= CATEGORY_MAX
        and _CATEGORY_OK.fullmatch(category) is not None
        and (fields is None or (len(fields) <= FIELDS_MAX and _FIELDS_OK.fullmatch(fields) is not None))
    )


def _read_parameters(request: Request) -> tuple[str, str | None]:
    category: str = request.path_params["category"]
    fields = request.query_params.get("fields") if request.scope["query_string"] else None
    if _plainly_valid(category, fields):
        return category, fields
    errors: list[Any] = []
    for where, adapter, value in (("path", _CATEGORY, category), ("query", _FIELDS, fields)):
        if value is None:
            continue
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            name = "category" if where == "path" else "fields"
            errors += [{**e, "loc": (where, name, *e["loc"])} for e in exc.errors(include_url=False)]
    if errors:
        raise RequestValidationError(errors)
    return category, fields


@router.get(
    "/records",
    response_model=RecordList,
    responses=ERRORS,
    summary="The categories this token may read for its resident (no content)",
)
def list_records(access: AccessDep) -> RecordList:
    services, grant = access.services, access.grant
    with services.db.session() as session:
        summaries = services.vault.list_granted(session, access.ctx, grant)
    return RecordList(items=[RecordSummaryPublic.of(s) for s in summaries])


class RequestOnlyRoute(APIRoute):
    """A route whose endpoint takes the bare request and returns its response, called directly.

    FastAPI's ``get_route_handler`` (the documented hook for custom route classes) would resolve the
    endpoint's dependencies and serialise its result; an endpoint that reads its own parameters and
    serialises its own answer needs neither, and skipping them is a tenth of the read's CPU. The
    OpenAPI document, matching and exception handling stay FastAPI's.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
        return handler


async def read_record(request: Request) -> Response:
    # The hot path, so it takes the bare request: FastAPI's resolution of declared parameters and
    # dependencies cost a third of the whole read (docs/performance.md). Same order as FastAPI:
    # the access token first, then the parameters; same checks, same problem documents.
    # The grant's look-up also reads the record it would give (one statement instead of two); the
    # category is a bound parameter there, checked below like every parameter, after the token.
    lean = services_of(request).lean
    prefetch = lean.prefetch(request.path_params["category"])
    access = await department_access_fetching(
        request, prefetch, prefetch.fetch_async if lean.is_async else None
    )
    category, fields = _read_parameters(request)
    services, grant, ctx = access.services, access.grant, access.ctx
    # Decide and decrypt on the rows that came with the grant's look-up (no database here), then
    # hand the audit entry to the group committer and answer only once it is durable (one fsync
    # per batch, not per request).
    resident, record, version = prefetch.rows_of(grant.grant_id, category)
    outcome = services.vault.decide_read(
        ctx, grant, category, resident, record, version, fields=_fields(fields)
    )
    await services.audit_writer.append(outcome.event)
    content = outcome.result()
    # Serialised here, once: returning the model would have FastAPI validate it again against the
    # response model before serialising it (the values come from our own decrypted record).
    body: RecordBody = {
        "category": content.category,
        "version": content.version,
        "updated_at": content.updated_at,
        "source": content.source,
        "data": content.data,
    }
    return Response(RECORD_BODY_JSON.dump_json(body), media_type="application/json")


def read_route(app: FastAPI) -> APIRoute:
    """The route of ``read_record`` (``install_read_route`` put it on the application's router)."""
    for route in app.router.routes:
        if isinstance(route, APIRoute) and route.endpoint is read_record:
            return route
    raise LookupError("the record read's route is not installed")


def install_read_route(app: FastAPI) -> None:
    """``GET /api/v1/records/{category}`` on the application's own router, not on ``router``.

    FastAPI matches a request against an included router twice (once to pick the router, once
    inside it, each walking its routes); for the hottest route of the API that was about 40 µs of
    the read's CPU (docs/performance.md). Same path, tag, parameters and OpenAPI operation.
    """
    app.router.add_api_route(
        router.prefix + "/records/{category}",
        read_record,
        methods=["GET"],
        tags=list(router.tags),
        response_model=RecordPublic,
        responses=ERRORS,
        summary="The current record of a category, decrypted",
        openapi_extra={"parameters": READ_PARAMETERS},
        route_class_override=RequestOnlyRoute,
    )


@router.get(
    "/records/{category}/versions",
    response_model=RecordList,
    responses=ERRORS,
    summary="The versions of a record (no content)",
)
def list_versions(category: CategoryPath, access: AccessDep) -> RecordList:
    services, grant = access.services, access.grant
    with services.db.session() as session:
        versions = services.vault.history_granted(session, access.ctx, grant, category)
    return RecordList(items=[RecordSummaryPublic.of(v) for v in versions])


@router.get(
    "/records/{category}/versions/{version}",
    response_model=RecordPublic,
    responses=ERRORS,
    summary="One past version of a record, decrypted",
)
def read_version(
    category: CategoryPath,
    version: Annotated[int, Path(ge=1, le=2**31 - 1)],
    access: AccessDep,
    fields: FieldsQuery = None,
) -> RecordPublic:
    services, grant, ctx = access.services, access.grant, access.ctx
    with services.db.session() as session:
        if not grant.may_read_history:
            raise services.vault.deny(
                session, ctx, grant, "vault:record:read", "history_not_granted", [category]
            )
        content = services.vault.read_granted(
            session, ctx, grant, category, version=version, fields=_fields(fields)
        )
    return RecordPublic.of(content)


@router.put(
    "/records/{category}",
    response_model=RecordSummaryPublic,
    responses={
        **ERRORS,
        422: {"description": "The document does not match the category's schema", **PROBLEM},
    },
    summary="Write a new version of a record, where the grant allows it",
)
def write_record(
    category: CategoryPath,
    access: AccessDep,
    document: Annotated[dict[str, Any], Body(description="The record (a JSON object).")],
) -> RecordSummaryPublic:
    services = access.services
    with services.db.session() as session:
        summary = services.vault.write_granted(session, access.ctx, access.grant, category, document)
    return RecordSummaryPublic.of(summary)
