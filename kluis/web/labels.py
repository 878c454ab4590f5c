"""Plain-language names for codes that the domain stores (categories, sources, audit events).

Each text is a message id of the catalogues, marked with ``N_`` so that extraction finds it; the
page translates it when it renders.
"""

from __future__ import annotations


def N_(message: str) -> str:  # noqa: N802 - the gettext convention for "mark, translate later"
    return message


CATEGORIES = {
    "brp.persoon": N_("Personal details (BRP)"),
    "inkomen": N_("Income"),
    "jeugdzorg.dossier": N_("Youth care file"),
    "schulden": N_("Debts"),
    "wmo.indicatie": N_("Care and support (Wmo)"),
}
# "your income details" in a sentence of the access history.
CATEGORY_PHRASES = {
    "brp.persoon": N_("your personal details"),
    "inkomen": N_("your income details"),
    "jeugdzorg.dossier": N_("your youth care file"),
    "schulden": N_("your debt details"),
    "wmo.indicatie": N_("your care and support details"),
}
SOURCES = {
    "brp": N_("Basisregistratie Personen (BRP)"),
    "demo": N_("Demo data"),
    "resident": N_("Yourself"),
}


def category(code: str) -> str:
    return CATEGORIES.get(code, code)


def category_phrase(code: str) -> str:
    return CATEGORY_PHRASES.get(code, code)


def source(code: str) -> str:
    if code.startswith("department:"):
        return code.split(":", 1)[1]
    return SOURCES.get(code, code)
