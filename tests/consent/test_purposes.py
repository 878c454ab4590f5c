"""The processing-activity register."""

from __future__ import annotations

from typing import Any

import pytest

from consent.errors import DuplicatePurposeError, InvalidPurposeError
from tests.consent.conftest import Town, audit_rows

GOOD: dict[str, Any] = {
    "description_nl": "Schuldhulp",
    "description_en": "Debt relief",
    "legal_basis": "consent",
    "categories": ["schulden", "inkomen"],
    "max_days": 180,
}


def test_add_and_list(db, consent, ctx, town: Town):
    with db.session() as s:
        purpose = consent.purposes.add(
            s, ctx(), town.tenant, "schuldhulp", **GOOD, writable_categories=["schulden"]
        )
    assert purpose.categories == ["inkomen", "schulden"] and purpose.writable_categories == ["schulden"]
    with db.read_session() as s:
        codes = [p.code for p in consent.purposes.list(s, town.tenant.id)]
    assert codes == ["bijstand", "jeugdhulp", "schuldhulp"]
    [row] = [
        r
        for r in audit_rows(db, town.tenant.id)
        if r["name"] == "consent:purpose:added" and r["processing_activity_id"] == "schuldhulp"
    ]
    assert row["legal_basis"] == "consent"


@pytest.mark.parametrize(
    "change",
    [
        {"code": "Bad Code"},
        {"description_nl": " "},
        {"description_en": "x" * 2001},
        {"legal_basis": "because"},
        {"legal_basis": "legal_obligation"},  # needs the statute
        {"categories": []},
        {"categories": ["bestaat.niet"]},
        {"writable_categories": ["brp.persoon"]},
        {"max_days": 0},
        {"max_days": 10_000},
    ],
)
def test_bad_purposes_are_refused(db, consent, ctx, town: Town, change):
    args = {**GOOD, **change}
    code = args.pop("code", "schuldhulp")
    with db.session() as s, pytest.raises(InvalidPurposeError):
        consent.purposes.add(s, ctx(), town.tenant, code, **args)


def test_other_legal_bases_name_their_statute(db, consent, ctx, town: Town):
    args = {**GOOD, "legal_basis": "legal_obligation"}
    with db.session() as s:
        purpose = consent.purposes.add(
            s, ctx(), town.tenant, "wettelijk", **args, statute="Participatiewet art. 17"
        )
    assert purpose.statute == "Participatiewet art. 17"


def test_duplicates_and_other_towns(db, consent, ctx, make_town):
    a, b = make_town("gemeente-a"), make_town("gemeente-b")
    with db.session() as s, pytest.raises(DuplicatePurposeError):
        consent.purposes.add(s, ctx(), a.tenant, "bijstand", **GOOD)
    with db.read_session() as s:
        assert {p.tenant_id for p in consent.purposes.list(s, b.tenant.id)} == {b.tenant.id}
