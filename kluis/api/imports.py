"""``POST /api/v1/records/{category}/refresh``: a department refreshes its resident's record from
the municipality's source registry (e.g. the BRP), where its grant allows writing the category.

The resident comes from the token's grant, never from the URL. Every attempt is audited: a refusal
(``vault:record:imported``, decision deny), a failed fetch (``vault:record:import_failed``) or the
stored version (``vault:record:imported``, with the grant and the source).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from kluis.api.dpop import AccessDep
from kluis.api.records import ERRORS, PROBLEM, CategoryPath, RecordSummaryPublic
from kluis.imports import refresh_granted

router = APIRouter(prefix="/api/v1", tags=["records"])

REFRESH_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {"description": "The grant does not cover this category or does not allow writing it", **PROBLEM},
    404: {
        "description": "No source is configured for this category, or it does not know the person",
        **PROBLEM,
    },
    502: {"description": "The source refused the request or gave an invalid answer", **PROBLEM},
    503: {
        "description": "The source is unavailable, or its connector is not configured (see Retry-After)",
        **PROBLEM,
    },
}


@router.post(
    "/records/{category}/refresh",
    response_model=RecordSummaryPublic,
    responses=REFRESH_ERRORS,
    summary="Refresh the record from the municipality's source registry, where the grant allows writing it",
)
def refresh_record(category: CategoryPath, access: AccessDep) -> RecordSummaryPublic:
    return RecordSummaryPublic.of(refresh_granted(access.services, access.ctx, access.grant, category))
