"""From a BRP API Personen v2 ``Persoon`` to a ``brp.persoon`` record.

The record keeps what the category is for (name, birth, address, nationality, household and
gezag) and drops the rest: no A-nummer, no sex, no investigation flags, no names of the adults in
gezag relations. BRP placeholders for "unknown" (a ``.`` name or street, a ``DatumOnbekend``) are
left out rather than stored as if they were values. Dates become ISO 8601 strings, reduced to
``YYYY-MM`` or ``YYYY`` when the BRP only knows part of them.

A wrong shape raises :class:`InvalidAnswerError` with the JSON pointer where it was found; the
mapped record is then checked against the category's schema by the connector.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from datetime import date
from typing import Any

from connectors.errors import InvalidAnswerError
from connectors.schemas import Gezaghouder, GezagRelation, GezagType

#: The ``fields`` sent to the BRP: exactly what :func:`map_persoon` reads (data minimisation).
#: ``burgerservicenummer`` is asked only to check that the answer is about the person we asked for;
#: it is not stored in the record (the vault knows its resident).
BRP_PERSOON_FIELDS: tuple[str, ...] = (
    "burgerservicenummer",
    "naam.voornamen",
    "naam.adellijkeTitelPredicaat",
    "naam.voorvoegsel",
    "naam.geslachtsnaam",
    "geboorte.datum",
    "geboorte.plaats",
    "geboorte.land",
    "verblijfplaats.type",
    "verblijfplaats.verblijfadres",
    "gemeenteVanInschrijving",
    "nationaliteiten.type",
    "nationaliteiten.nationaliteit",
    "ouders.burgerservicenummer",
    "ouders.ouderAanduiding",
    "ouders.naam.voornamen",
    "ouders.naam.voorvoegsel",
    "ouders.naam.geslachtsnaam",
    "ouders.geboorte.datum",
    "kinderen.burgerservicenummer",
    "kinderen.naam.voornamen",
    "kinderen.naam.voorvoegsel",
    "kinderen.naam.geslachtsnaam",
    "kinderen.geboorte.datum",
    "partners.burgerservicenummer",
    "partners.naam.voornamen",
    "partners.naam.voorvoegsel",
    "partners.naam.geslachtsnaam",
    "partners.geboorte.datum",
    "partners.soortVerbintenis",
    "partners.aangaanHuwelijkPartnerschap.datum",
    "partners.ontbindingHuwelijkPartnerschap.datum",
    "gezag.type",
    "gezag.minderjarige.burgerservicenummer",
    "gezag.ouders.burgerservicenummer",
    "gezag.ouder.burgerservicenummer",
    "gezag.derde.type",
    "gezag.derde.burgerservicenummer",
    "gezag.derden.type",
    "gezag.derden.burgerservicenummer",
    "gezag.toelichting",
)

_NATIONALITEIT_TYPES = frozenset(
    {
        "Nationaliteit",
        "BehandeldAlsNederlander",
        "VastgesteldNietNederlander",
        "Staatloos",
        "NationaliteitOnbekend",
    }
)


def map_persoon(persoon: Mapping[str, Any]) -> dict[str, Any]:
    """Map one ``Persoon`` (as the BRP answered it) to a ``brp.persoon`` record."""
    record: dict[str, Any] = {"naam": _naam(_obj(persoon, "naam", "") or {}, "/naam", own=True)}
    geboorte = _obj(persoon, "geboorte", "")
    if geboorte is not None:
        record["geboorte"] = _geboorte(geboorte, "/geboorte")
    verblijfplaats = _obj(persoon, "verblijfplaats", "")
    if verblijfplaats is not None:
        record["verblijfplaats"] = _verblijfplaats(verblijfplaats, "/verblijfplaats")
    _put(record, "gemeente_van_inschrijving", _waarde(persoon, "gemeenteVanInschrijving", ""))
    record["nationaliteiten"] = [_nationaliteit(n, p) for n, p in _items(persoon, "nationaliteiten", "")]
    record["ouders"] = [_ouder(o, p) for o, p in _items(persoon, "ouders", "")]
    record["kinderen"] = [_relative(k, p) for k, p in _items(persoon, "kinderen", "")]
    record["partners"] = [_partner(o, p) for o, p in _items(persoon, "partners", "")]
    record["gezag"] = [_gezagsrelatie(g, p).to_record() for g, p in _items(persoon, "gezag", "")]
    return record


def gezag_relations(record: Mapping[str, Any]) -> tuple[GezagRelation, ...]:
    """The gezag relations of a stored (validated) ``brp.persoon`` record."""
    return tuple(GezagRelation.from_record(item) for item in record.get("gezag", ()))


AGE_OF_MAJORITY = 18  # Burgerlijk Wetboek 1:233


def adult_from(geboortedatum: str | None) -> date | None:
    """The first day someone born on ``geboortedatum`` (as stored: ``YYYY-MM-DD``, ``YYYY-MM`` or
    ``YYYY``) may be of age; None when the date is unknown or unreadable.

    A partial date takes the earliest day it allows (the first of the month or year), and 29
    February the 28th in a common year: a parent's authority ends on the day it may have ended,
    never later."""
    if not geboortedatum:
        return None
    parts = geboortedatum.split("-")
    try:
        born = date(
            int(parts[0]), int(parts[1]) if len(parts) > 1 else 1, int(parts[2]) if len(parts) > 2 else 1
        )
        year = born.year + AGE_OF_MAJORITY
        if (born.month, born.day) == (2, 29) and not calendar.isleap(year):
            return date(year, 2, 28)
        return born.replace(year=year)
    except (ValueError, OverflowError):  # not a date, or a year no one is born in (past 9981)
        return None


# -- groups ------------------------------------------------------------------------------------


def _naam(naam: Mapping[str, Any], path: str, *, own: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("voornamen", "voorvoegsel", "geslachtsnaam"):
        _put(out, key, _name_part(naam, key, path))
    if own:
        _put(out, "adellijke_titel_predicaat", _waarde(naam, "adellijkeTitelPredicaat", path))
    return out


def _geboorte(geboorte: Mapping[str, Any], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _put(out, "datum", _datum(geboorte, "datum", path))
    _put(out, "plaats", _waarde(geboorte, "plaats", path))
    _put(out, "land", _waarde(geboorte, "land", path))
    return out


def _verblijfplaats(vp: Mapping[str, Any], path: str) -> dict[str, Any]:
    kind = _str(vp, "type", path)
    adres = _obj(vp, "verblijfadres", path) or {}
    sub = f"{path}/verblijfadres"
    out: dict[str, Any] = {"type": kind}
    if kind == "Adres":
        straat = _name_part(adres, "officieleStraatnaam", sub) or _name_part(adres, "korteStraatnaam", sub)
        _put(out, "straat", straat)
        _put(out, "huisnummer", _opt_int(adres, "huisnummer", sub))
        _put(out, "huisletter", _opt_str(adres, "huisletter", sub))
        _put(out, "huisnummertoevoeging", _opt_str(adres, "huisnummertoevoeging", sub))
        _put(out, "aanduiding_bij_huisnummer", _waarde(adres, "aanduidingBijHuisnummer", sub))
        postcode = _opt_str(adres, "postcode", sub)
        _put(out, "postcode", postcode.replace(" ", "").upper() if postcode else None)
        _put(out, "woonplaats", _opt_str(adres, "woonplaats", sub))
    elif kind == "Locatie":
        _put(out, "locatiebeschrijving", _opt_str(adres, "locatiebeschrijving", sub))
    elif kind == "VerblijfplaatsBuitenland":
        for key in ("regel1", "regel2", "regel3"):
            _put(out, key, _opt_str(adres, key, sub))
        _put(out, "land", _waarde(adres, "land", sub))
    elif kind != "VerblijfplaatsOnbekend":
        raise InvalidAnswerError("unknown kind of verblijfplaats", path=f"{path}/type")
    return out


def _nationaliteit(nat: Mapping[str, Any], path: str) -> dict[str, Any]:
    kind = _str(nat, "type", path)
    if kind not in _NATIONALITEIT_TYPES:
        raise InvalidAnswerError("unknown kind of nationaliteit", path=f"{path}/type")
    out: dict[str, Any] = {"type": kind}
    _put(out, "nationaliteit", _waarde(nat, "nationaliteit", path))
    return out


def _relative(rel: Mapping[str, Any], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _put(out, "bsn", _opt_str(rel, "burgerservicenummer", path))
    naam = _obj(rel, "naam", path)
    if naam is not None:
        _put(out, "naam", _naam(naam, f"{path}/naam") or None)
    geboorte = _obj(rel, "geboorte", path)
    if geboorte is not None:
        _put(out, "geboortedatum", _datum(geboorte, "datum", f"{path}/geboorte"))
    return out


def _ouder(ouder: Mapping[str, Any], path: str) -> dict[str, Any]:
    out = _relative(ouder, path)
    _put(out, "ouder_aanduiding", _opt_str(ouder, "ouderAanduiding", path))
    return out


def _partner(partner: Mapping[str, Any], path: str) -> dict[str, Any]:
    out = _relative(partner, path)
    _put(out, "soort_verbintenis", _waarde(partner, "soortVerbintenis", path))
    aangaan = _obj(partner, "aangaanHuwelijkPartnerschap", path)
    if aangaan is not None:
        _put(out, "datum_aangaan", _datum(aangaan, "datum", f"{path}/aangaanHuwelijkPartnerschap"))
    ontbinding = _obj(partner, "ontbindingHuwelijkPartnerschap", path)
    if ontbinding is not None:
        sub = f"{path}/ontbindingHuwelijkPartnerschap"
        _put(out, "datum_ontbinding", _datum(ontbinding, "datum", sub))
    return out


def _gezagsrelatie(rel: Mapping[str, Any], path: str) -> GezagRelation:
    try:
        kind = GezagType(_str(rel, "type", path))
    except ValueError:
        raise InvalidAnswerError("unknown kind of gezag", path=f"{path}/type") from None
    minderjarige = _obj(rel, "minderjarige", path)
    holders: list[Gezaghouder] = []
    for gezagouder, p in _items(rel, "ouders", path):
        holders.append(Gezaghouder("ouder", _opt_str(gezagouder, "burgerservicenummer", p)))
    ouder = _obj(rel, "ouder", path)
    if ouder is not None:
        holders.append(Gezaghouder("ouder", _opt_str(ouder, "burgerservicenummer", f"{path}/ouder")))
    derde = _obj(rel, "derde", path)
    if derde is not None:
        holders.append(Gezaghouder("derde", _opt_str(derde, "burgerservicenummer", f"{path}/derde")))
    for d, p in _items(rel, "derden", path):
        holders.append(Gezaghouder("derde", _opt_str(d, "burgerservicenummer", p)))
    return GezagRelation(
        type=kind,
        minderjarige_bsn=(
            _opt_str(minderjarige, "burgerservicenummer", f"{path}/minderjarige")
            if minderjarige is not None
            else None
        ),
        meerderjarigen=tuple(holders),
        toelichting=_opt_str(rel, "toelichting", path),
    )


def _datum(parent: Mapping[str, Any], key: str, path: str) -> str | None:
    """An ``AbstractDatum`` as ISO 8601 (``YYYY-MM-DD``, ``YYYY-MM``, ``YYYY``), None if unknown."""
    datum = _obj(parent, key, path)
    if datum is None:
        return None
    sub = f"{path}/{key}"
    kind = _str(datum, "type", sub)
    if kind == "Datum":
        return _str(datum, "datum", sub)
    if kind == "JaarMaandDatum":
        return f"{_int(datum, 'jaar', sub):04d}-{_int(datum, 'maand', sub):02d}"
    if kind == "JaarDatum":
        return f"{_int(datum, 'jaar', sub):04d}"
    if kind == "DatumOnbekend":
        return None
    raise InvalidAnswerError("unknown kind of datum", path=f"{sub}/type")


def _waarde(parent: Mapping[str, Any], key: str, path: str) -> dict[str, str] | None:
    """A ``Waardetabel`` (code and/or omschrijving: a foreign place has no code); None when absent."""
    value = _obj(parent, key, path)
    if value is None:
        return None
    sub = f"{path}/{key}"
    out: dict[str, str] = {}
    _put(out, "code", _opt_str(value, "code", sub))
    _put(out, "omschrijving", _opt_str(value, "omschrijving", sub))
    return out or None


# -- typed access --------------------------------------------------------------------------------


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        target[key] = value


def _obj(parent: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidAnswerError("expected an object", path=f"{path}/{key}")
    return value


def _items(parent: Mapping[str, Any], key: str, path: str) -> list[tuple[Mapping[str, Any], str]]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidAnswerError("expected a list", path=f"{path}/{key}")
    items = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise InvalidAnswerError("expected an object", path=f"{path}/{key}/{i}")
        items.append((item, f"{path}/{key}/{i}"))
    return items


def _opt_str(parent: Mapping[str, Any], key: str, path: str) -> str | None:
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidAnswerError("expected a string", path=f"{path}/{key}")
    value = value.strip()
    return value or None


def _str(parent: Mapping[str, Any], key: str, path: str) -> str:
    value = _opt_str(parent, key, path)
    if value is None:
        raise InvalidAnswerError("missing value", path=f"{path}/{key}")
    return value


def _name_part(parent: Mapping[str, Any], key: str, path: str) -> str | None:
    value = _opt_str(parent, key, path)
    # "." is the BRP's standard value for a name or street that is not known.
    return None if value == "." else value


def _opt_int(parent: Mapping[str, Any], key: str, path: str) -> int | None:
    value = parent.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAnswerError("expected an integer", path=f"{path}/{key}")
    return value


def _int(parent: Mapping[str, Any], key: str, path: str) -> int:
    value = _opt_int(parent, key, path)
    if value is None:
        raise InvalidAnswerError("missing value", path=f"{path}/{key}")
    return value
