"""A stand-in for Haal Centraal BRP Bevragen (Personen API v2), served over loopback HTTP.

Written from the specification (``brp-personen-openapi.yaml``, v2.7.0) and fed with the 1,176
fictitious persons of the BRP project's own mock (``kluis/demo/personen-test-data.json.gz``). That
data is in the mock's GBA-like internal form (``19750707`` dates, flat addresses); the stand-in
converts it to the API's shapes (``AbstractDatum``, ``Adres``/``VerblijfplaatsBuitenland``/…,
``Gezagsrelatie``) as the real proxy does, then applies ``fields`` as the specification says:

- ``POST /haalcentraal/api/brp/personen`` answers ``RaadpleegMetBurgerservicenummer`` only; an
  unknown BSN yields no entry in ``personen`` (never a 404); ``gemeenteVanInschrijving`` filters.
- ``fields`` paths must exist (400, ``invalidParams`` ``fields[i]``); a path into a ``Waardetabel``
  or a date delivers the whole value; values that are empty after filtering are left out; the
  automatically delivered fields (``geheimhoudingPersoonsgegevens``, ``opschortingBijhouding``,
  ``rni``, ``verificatie``) come anyway and may not be asked for.
- Authentication: ``X-API-KEY`` or an OAuth bearer token from ``POST /oauth/token`` (client
  credentials, basic or post); 401 without valid credentials; 403 when a key or client is only
  authorised for some fields and asks for others. Errors are RFC 9457 problem documents.

Limitations: ``inOnderzoek`` is not served, and ``adressering`` is not derived.

Two small JSON routes play the generic sources (an income system, a case system). Fault knobs
(429/503 with ``Retry-After``, slow answers, tampered persons) and a record of every request body
let tests check the connector from the outside.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import gzip
import json
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

REPO = Path(__file__).resolve().parents[2]
PERSONEN_DATA = REPO / "kluis" / "demo" / "personen-test-data.json.gz"
GEZAG_DATA = REPO / "kluis" / "demo" / "gezag-test-data.json"
BRP_PATH = "/haalcentraal/api/brp"

Json = dict[str, Any]

# -- the fields the specification defines (Persoon, with the subtypes' properties merged) ---------


class _Atomic:
    """A value delivered whole (a date or a table value) whatever sub-path was asked for."""

    def __init__(self, *keys: str) -> None:
        self.keys = frozenset(keys)


LEAF = None
DATUM = _Atomic("type", "datum", "langFormaat", "jaar", "maand", "onbekend")
WAARDE = _Atomic("code", "omschrijving")
ADELLIJK = _Atomic("code", "omschrijving", "soort")
_NAAM_GERELATEERDE = {
    "voornamen": LEAF,
    "adellijkeTitelPredicaat": ADELLIJK,
    "voorvoegsel": LEAF,
    "geslachtsnaam": LEAF,
    "voorletters": LEAF,
}
_GEBOORTE = {"datum": DATUM, "land": WAARDE, "plaats": WAARDE}
_GEZAG_PERSOON = {"burgerservicenummer": LEAF, "naam": {"volledigeNaam": LEAF}}
_DERDE = {"type": LEAF, **_GEZAG_PERSOON}
FIELD_TREE: dict[str, Any] = {
    "aNummer": LEAF,
    "burgerservicenummer": LEAF,
    "datumEersteInschrijvingGBA": DATUM,
    "geslacht": WAARDE,
    "uitsluitingKiesrecht": {"uitgeslotenVanKiesrecht": LEAF, "einddatum": DATUM},
    "europeesKiesrecht": {"aanduiding": WAARDE, "einddatumUitsluiting": DATUM},
    "leeftijd": LEAF,
    "naam": {
        "voornamen": LEAF,
        "adellijkeTitelPredicaat": ADELLIJK,
        "voorvoegsel": LEAF,
        "geslachtsnaam": LEAF,
        "voorletters": LEAF,
        "volledigeNaam": LEAF,
        "aanduidingNaamgebruik": WAARDE,
    },
    "nationaliteiten": {
        "type": LEAF,
        "redenOpname": WAARDE,
        "datumIngangGeldigheid": DATUM,
        "nationaliteit": WAARDE,
    },
    "geboorte": _GEBOORTE,
    "overlijden": {"datum": DATUM, "land": WAARDE, "plaats": WAARDE},
    "verblijfplaats": {
        "type": LEAF,
        "datumIngangGeldigheid": DATUM,
        "datumVan": DATUM,
        "functieAdres": WAARDE,
        "adresseerbaarObjectIdentificatie": LEAF,
        "nummeraanduidingIdentificatie": LEAF,
        "indicatieVastgesteldVerblijftNietOpAdres": LEAF,
        "verblijfadres": {
            "officieleStraatnaam": LEAF,
            "korteStraatnaam": LEAF,
            "huisnummer": LEAF,
            "huisletter": LEAF,
            "huisnummertoevoeging": LEAF,
            "aanduidingBijHuisnummer": WAARDE,
            "postcode": LEAF,
            "woonplaats": LEAF,
            "locatiebeschrijving": LEAF,
            "regel1": LEAF,
            "regel2": LEAF,
            "regel3": LEAF,
            "land": WAARDE,
        },
    },
    "immigratie": {
        "landVanwaarIngeschreven": WAARDE,
        "datumVestigingInNederland": DATUM,
        "vanuitVerblijfplaatsOnbekend": LEAF,
        "indicatieVestigingVanuitBuitenland": LEAF,
    },
    "gemeenteVanInschrijving": WAARDE,
    "datumInschrijvingInGemeente": DATUM,
    "adressering": {
        "adresregel1": LEAF,
        "adresregel2": LEAF,
        "adresregel3": LEAF,
        "land": WAARDE,
        "indicatieVastgesteldVerblijftNietOpAdres": LEAF,
        "aanhef": LEAF,
        "aanschrijfwijze": {"naam": LEAF, "aanspreekvorm": LEAF},
        "gebruikInLopendeTekst": LEAF,
    },
    "indicatieCurateleRegister": LEAF,
    "indicatieGezagMinderjarige": WAARDE,
    "gezag": {
        "type": LEAF,
        "minderjarige": {**_GEZAG_PERSOON, "leeftijd": LEAF},
        "ouders": _GEZAG_PERSOON,
        "ouder": _GEZAG_PERSOON,
        "derde": _DERDE,
        "derden": _DERDE,
        "toelichting": LEAF,
    },
    "verblijfstitel": {"aanduiding": WAARDE, "datumEinde": DATUM, "datumIngang": DATUM},
    "kinderen": {"burgerservicenummer": LEAF, "naam": _NAAM_GERELATEERDE, "geboorte": _GEBOORTE},
    "ouders": {
        "burgerservicenummer": LEAF,
        "geslacht": WAARDE,
        "ouderAanduiding": LEAF,
        "datumIngangFamilierechtelijkeBetrekking": DATUM,
        "naam": _NAAM_GERELATEERDE,
        "geboorte": _GEBOORTE,
    },
    "partners": {
        "burgerservicenummer": LEAF,
        "geslacht": WAARDE,
        "soortVerbintenis": WAARDE,
        "naam": _NAAM_GERELATEERDE,
        "geboorte": _GEBOORTE,
        "aangaanHuwelijkPartnerschap": {"datum": DATUM, "land": WAARDE, "plaats": WAARDE},
        "ontbindingHuwelijkPartnerschap": {"datum": DATUM},
    },
}
AUTOMATIC_FIELDS = ("geheimhoudingPersoonsgegevens", "opschortingBijhouding", "rni", "verificatie")
_SEARCH_TYPES = frozenset(
    {
        "ZoekMetGeslachtsnaamEnGeboortedatum",
        "ZoekMetNaamEnGemeenteVanInschrijving",
        "ZoekMetPostcodeEnHuisnummer",
        "ZoekMetStraatHuisnummerEnGemeenteVanInschrijving",
        "ZoekMetNummeraanduidingIdentificatie",
        "ZoekMetAdresseerbaarObjectIdentificatie",
    }
)


def field_exists(path: str) -> bool:
    node: Any = FIELD_TREE
    for part in path.split("."):
        if isinstance(node, _Atomic):
            return part in node.keys
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def selection(fields: list[str]) -> dict[str, Any]:
    """The selection tree for valid ``fields``: ``True`` takes a whole subtree."""
    tree: dict[str, Any] = {}
    for path in fields:
        node, spec = tree, FIELD_TREE
        parts = path.split(".")
        for i, part in enumerate(parts):
            child = spec[part]
            if i == len(parts) - 1 or not isinstance(child, dict):
                node[part] = True
                break
            if node.get(part) is True:
                break
            node = node.setdefault(part, {})
            spec = child
    return tree


def apply_selection(value: Any, sel: Any) -> Any:
    if sel is True:
        return value
    if isinstance(value, list):
        items = [apply_selection(v, sel) for v in value]
        return [i for i in items if i not in (None, {}, [])]
    if isinstance(value, dict):
        out = {k: apply_selection(value[k], s) for k, s in sel.items() if k in value}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    return value


# -- the mock's internal form → the API's shapes -----------------------------------------------

_MAANDEN = "januari februari maart april mei juni juli augustus september oktober november december".split()
_TOELICHTING = {
    "GezagNietTeBepalen": "gezag kan niet worden bepaald: de relatie tussen ouder en kind is onduidelijk.",
    "TijdelijkGeenGezag": "tijdelijk geen gezag omdat de ouder het gezag niet kan uitoefenen.",
}


def datum(raw: str | None) -> Json | None:
    if not raw or len(raw) != 8 or not raw.isdigit():
        return None
    jaar, maand, dag = int(raw[:4]), int(raw[4:6]), int(raw[6:])
    if jaar == 0:
        return {"type": "DatumOnbekend", "onbekend": True, "langFormaat": "onbekend"}
    if maand == 0:
        return {"type": "JaarDatum", "jaar": jaar, "langFormaat": str(jaar)}
    if dag == 0:
        return {
            "type": "JaarMaandDatum",
            "jaar": jaar,
            "maand": maand,
            "langFormaat": f"{_MAANDEN[maand - 1]} {jaar}",
        }
    return {
        "type": "Datum",
        "datum": f"{jaar:04d}-{maand:02d}-{dag:02d}",
        "langFormaat": f"{dag} {_MAANDEN[maand - 1]} {jaar}",
    }


def _compact(obj: Json) -> Json:
    return {k: v for k, v in obj.items() if v not in (None, {}, [], "")}


def _naam(raw: Json, *, persoon: bool) -> Json:
    voornamen = (raw.get("voornamen") or "").strip()
    out: Json = {
        "voornamen": voornamen or None,
        "adellijkeTitelPredicaat": raw.get("adellijkeTitelPredicaat"),
        "voorvoegsel": raw.get("voorvoegsel"),
        "geslachtsnaam": raw.get("geslachtsnaam"),
        "voorletters": "".join(f"{v[0]}." for v in voornamen.split()) or None,
    }
    if persoon:
        out["volledigeNaam"] = volledige_naam(raw)
        out["aanduidingNaamgebruik"] = raw.get("aanduidingNaamgebruik")
    return _compact(out)


def volledige_naam(raw: Json) -> str | None:
    parts = [(raw.get("voornamen") or "").strip(), raw.get("voorvoegsel"), raw.get("geslachtsnaam")]
    return " ".join(p for p in parts if p) or None


def _geboorte(raw: Json | None) -> Json | None:
    if not raw:
        return None
    return _compact({"datum": datum(raw.get("datum")), "land": raw.get("land"), "plaats": raw.get("plaats")})


def _verblijfplaats(raw: Json) -> Json:
    base = {"datumIngangGeldigheid": datum(raw.get("datumIngangGeldigheid"))}
    if "regel1" in raw or "land" in raw:
        if raw.get("land", {}).get("code") == "0000":
            return _compact({"type": "VerblijfplaatsOnbekend", **base})
        adres = _compact({k: raw.get(k) for k in ("regel1", "regel2", "regel3", "land")})
        return _compact(
            {
                "type": "VerblijfplaatsBuitenland",
                **base,
                "verblijfadres": adres,
                "datumVan": datum(raw.get("datumAanvangAdresBuitenland")),
            }
        )
    common = {
        **base,
        "functieAdres": raw.get("functieAdres"),
        "datumVan": datum(raw.get("datumAanvangAdreshouding")),
    }
    if "locatiebeschrijving" in raw:
        adres = {"locatiebeschrijving": raw["locatiebeschrijving"]}
        return _compact({"type": "Locatie", **common, "verblijfadres": adres})
    huisnummer = raw.get("huisnummer")
    adres = _compact(
        {
            "officieleStraatnaam": raw.get("naamOpenbareRuimte"),
            "korteStraatnaam": raw.get("straat"),
            "huisnummer": int(huisnummer) if huisnummer else None,
            "huisletter": raw.get("huisletter"),
            "huisnummertoevoeging": raw.get("huisnummertoevoeging"),
            "aanduidingBijHuisnummer": raw.get("aanduidingBijHuisnummer"),
            "postcode": raw.get("postcode"),
            "woonplaats": raw.get("woonplaats"),
        }
    )
    return _compact(
        {
            "type": "Adres",
            **common,
            "verblijfadres": adres,
            "adresseerbaarObjectIdentificatie": raw.get("adresseerbaarObjectIdentificatie"),
            "nummeraanduidingIdentificatie": raw.get("nummeraanduidingIdentificatie"),
        }
    )


def _nationaliteit(raw: Json) -> Json:
    code = raw.get("nationaliteit", {}).get("code")
    kind = {"0000": "NationaliteitOnbekend", "0499": "Staatloos"}.get(code or "", "Nationaliteit")
    return _compact(
        {
            "type": kind,
            "nationaliteit": raw.get("nationaliteit") if kind == "Nationaliteit" else None,
            "redenOpname": raw.get("redenOpname"),
            "datumIngangGeldigheid": datum(raw.get("datumIngangGeldigheid")),
        }
    )


def _gerelateerde(raw: Json, extra: tuple[str, ...] = ()) -> Json:
    out: Json = {
        "burgerservicenummer": raw.get("burgerservicenummer"),
        "naam": _naam(raw.get("naam", {}), persoon=False),
        "geboorte": _geboorte(raw.get("geboorte")),
    }
    for key in extra:
        value = raw.get(key)
        out[key] = datum(value) if key.startswith("datum") else value
    return _compact(out)


def _partner(raw: Json) -> Json:
    out = _gerelateerde(raw, ("geslacht", "soortVerbintenis"))
    aangaan = raw.get("aangaanHuwelijkPartnerschap")
    if aangaan:
        out["aangaanHuwelijkPartnerschap"] = _compact({**aangaan, "datum": datum(aangaan.get("datum"))})
    ontbinding = raw.get("ontbindingHuwelijkPartnerschap")
    if ontbinding:
        out["ontbindingHuwelijkPartnerschap"] = _compact({"datum": datum(ontbinding.get("datum"))})
    return out


def _gezag(raw: Json, own_bsn: str, names: dict[str, str]) -> Json:
    def persoon(ref: Json) -> Json:
        bsn = ref.get("burgerservicenummer")
        naam = {"volledigeNaam": names[bsn]} if bsn in names else {}
        return _compact({"burgerservicenummer": bsn, "naam": naam})

    kind = raw["type"]
    if kind == "TweehoofdigOuderlijkGezag":  # the mock's older name
        kind = "GezamenlijkOuderlijkGezag"
    minderjarige = raw.get("minderjarige") or {"burgerservicenummer": own_bsn}
    out: Json = {"type": kind, "minderjarige": persoon(minderjarige)}
    if "ouders" in raw:
        out["ouders"] = [persoon(o) for o in raw["ouders"]]
    if "ouder" in raw:
        out["ouder"] = persoon(raw["ouder"])
    if "derde" in raw:
        derde = raw["derde"]
        out["derde"] = (
            {"type": "BekendeDerde", **persoon(derde)}
            if derde.get("burgerservicenummer")
            else {"type": "OnbekendeDerde"}
        )
    if "derden" in raw:
        out["derden"] = [{"type": "BekendeDerde", **persoon(d)} for d in raw["derden"]]
    if kind in _TOELICHTING:
        out["toelichting"] = _TOELICHTING[kind]
    return out


def _leeftijd(geboorte: Json | None, overleden: bool, today: date) -> int | None:
    d = (geboorte or {}).get("datum")
    if overleden or not d or d.get("type") != "Datum":
        return None
    born = date.fromisoformat(d["datum"])
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def to_spec(raw: Json, names: dict[str, str], today: date) -> Json:
    """One person of the mock data as the API's ``Persoon``."""
    bsn = raw["burgerservicenummer"]
    geboorte = _geboorte(raw.get("geboorte"))
    overlijden = raw.get("overlijden")
    opschorting = raw.get("opschortingBijhouding")
    out: Json = {
        "aNummer": raw.get("aNummer"),
        "burgerservicenummer": bsn,
        "datumEersteInschrijvingGBA": datum(raw.get("datumEersteInschrijvingGBA")),
        "geslacht": raw.get("geslacht"),
        "leeftijd": _leeftijd(geboorte, bool(overlijden), today),
        "naam": _naam(raw.get("naam", {}), persoon=True),
        "nationaliteiten": [_nationaliteit(n) for n in raw.get("nationaliteiten", [])],
        "geboorte": geboorte,
        "overlijden": (
            _compact({**overlijden, "datum": datum(overlijden.get("datum")), "inOnderzoek": None})
            if overlijden
            else None
        ),
        "verblijfplaats": _verblijfplaats(raw["verblijfplaats"]) if raw.get("verblijfplaats") else None,
        "immigratie": _compact(
            {
                "landVanwaarIngeschreven": raw.get("immigratie", {}).get("landVanwaarIngeschreven"),
                "datumVestigingInNederland": datum(
                    raw.get("immigratie", {}).get("datumVestigingInNederland")
                ),
            }
        ),
        "gemeenteVanInschrijving": raw.get("gemeenteVanInschrijving"),
        "datumInschrijvingInGemeente": datum(raw.get("datumInschrijvingInGemeente")),
        "indicatieCurateleRegister": raw.get("indicatieCurateleRegister"),
        "indicatieGezagMinderjarige": raw.get("indicatieGezagMinderjarige"),
        "gezag": [_gezag(g, bsn, names) for g in raw.get("gezag", [])],
        "verblijfstitel": (
            _compact(
                {
                    "aanduiding": raw["verblijfstitel"].get("aanduiding"),
                    "datumIngang": datum(raw["verblijfstitel"].get("datumIngang")),
                    "datumEinde": datum(raw["verblijfstitel"].get("datumEinde")),
                }
            )
            if raw.get("verblijfstitel")
            else None
        ),
        "kinderen": [_gerelateerde(k) for k in raw.get("kinderen", [])],
        "ouders": [
            _gerelateerde(o, ("geslacht", "ouderAanduiding", "datumIngangFamilierechtelijkeBetrekking"))
            for o in raw.get("ouders", [])
        ],
        "partners": [_partner(p) for p in raw.get("partners", [])],
        # Delivered automatically, whatever ``fields`` says:
        "geheimhoudingPersoonsgegevens": True if raw.get("geheimhoudingPersoonsgegevens") else None,
        "opschortingBijhouding": (
            _compact({"reden": opschorting.get("reden"), "datum": datum(opschorting.get("datum"))})
            if opschorting
            else None
        ),
        "rni": raw.get("rni"),
        "verificatie": (
            _compact({**raw["verificatie"], "datum": datum(raw["verificatie"].get("datum"))})
            if raw.get("verificatie")
            else None
        ),
    }
    return _compact(out)


def load_raw_personen(path: Path = PERSONEN_DATA) -> list[Json]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data: list[Json] = json.load(fh)
    return data


def load_personen(raw: list[Json] | None = None, today: date | None = None) -> dict[str, Json]:
    """BSN → the API's ``Persoon`` for every person in the test data."""
    raw = raw if raw is not None else load_raw_personen()
    names = {p["burgerservicenummer"]: n for p in raw if (n := volledige_naam(p.get("naam", {})))}
    today = today or date.today()
    return {p["burgerservicenummer"]: to_spec(p, names, today) for p in raw}


# -- knobs and records -------------------------------------------------------------------------


@dataclass
class Fault:
    status: int
    times: int = 1
    retry_after: str | None = None


@dataclass
class RecordedRequest:
    route: str
    headers: dict[str, str]
    body: Any
    #: How the caller authenticated ("api-key", "bearer" or None); never the credential itself.
    auth: str | None = None


@dataclass
class StandinState:
    """What the stand-in serves and how it misbehaves; tests change it between requests."""

    personen: dict[str, Json]
    api_keys: dict[str, frozenset[str] | None] = field(default_factory=dict)
    oauth_clients: dict[str, tuple[str, frozenset[str] | None]] = field(default_factory=dict)
    token_lifetime: int = 300
    delay: float = 0.0
    faults: dict[str, deque[Fault]] = field(default_factory=dict)
    tampered: dict[str, Callable[[Json], Json]] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    token_requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.api_keys = {"test-key": None}
            self.oauth_clients = {"kluis": ("kluis-secret", None)}
            self.token_lifetime = 300
            self.delay = 0.0
            self.faults = {}
            self.tampered = {}
            self.requests = []
            self.tokens = {}
            self.token_requests = 0

    def inject(self, route: str, status: int, *, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next ``times`` requests to ``route`` (personen, inkomen, zaken, token) with
        ``status``, with a ``Retry-After`` header when given."""
        with self.lock:
            self.faults.setdefault(route, deque()).append(Fault(status, times, retry_after))

    def clear_faults(self) -> None:
        with self.lock:
            self.faults = {}

    def tamper(self, bsn: str, change: Callable[[Json], Json]) -> None:
        """Serve ``change(persoon)`` instead of the person, after ``fields`` are applied."""
        with self.lock:
            self.tampered[bsn] = change

    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def recorded(self, route: str) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.route == route]

    def _next_fault(self, route: str) -> Fault | None:
        with self.lock:
            queue = self.faults.get(route)
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            if fault.times <= 0:
                queue.popleft()
            return fault


# -- the app -----------------------------------------------------------------------------------


def problem(
    status: int, title: str, *, code: str, instance: str, invalid: list[Json] | None = None
) -> JSONResponse:
    body: Json = {
        "type": f"https://datatracker.ietf.org/doc/html/rfc9110#status.{status}",
        "title": title,
        "status": status,
        "instance": instance,
        "code": code,
    }
    if invalid:
        body["invalidParams"] = invalid
        body["detail"] = "De foutieve parameter(s) zijn: " + ", ".join(p["name"] for p in invalid) + "."
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def _invalid(name: str, code: str, reason: str) -> Json:
    return {
        "type": "https://www.vng.nl/realisatie/api/validaties/" + code,
        "name": name,
        "code": code,
        "reason": reason,
    }


def validate_query(body: Any) -> list[Json]:
    """``invalidParams`` for a ``RaadpleegMetBurgerservicenummer`` query; empty when it is valid."""
    if not isinstance(body, dict):
        return [_invalid("body", "object", "Body is geen object.")]
    errors: list[Json] = []
    kind = body.get("type")
    if kind is None:
        return [_invalid("type", "required", "Parameter is verplicht.")]
    if kind != "RaadpleegMetBurgerservicenummer":
        reason = "Wordt niet ondersteund door de stand-in." if kind in _SEARCH_TYPES else "Onbekende waarde."
        return [_invalid("type", "value", reason)]
    for name in body:
        if name not in {"type", "fields", "burgerservicenummer", "gemeenteVanInschrijving"}:
            errors.append(_invalid(name, "unknownParam", "Parameter is niet verwacht."))
    errors += _validate_list(body, "burgerservicenummer", 20, r"^[0-9]{9}$", lambda _v: True)
    errors += _validate_list(body, "fields", 130, r"^[a-zA-Z0-9\._]{1,200}$", field_exists)
    gemeente = body.get("gemeenteVanInschrijving")
    if gemeente is not None and not (isinstance(gemeente, str) and len(gemeente) == 4 and gemeente.isdigit()):
        errors.append(
            _invalid("gemeenteVanInschrijving", "pattern", "Waarde voldoet niet aan patroon ^[0-9]{4}$.")
        )
    return errors


def _validate_list(
    body: Json, name: str, max_items: int, pattern: str, exists: Callable[[str], bool]
) -> list[Json]:
    value = body.get(name)
    if value is None:
        return [_invalid(name, "required", "Parameter is verplicht.")]
    if not isinstance(value, list):
        return [_invalid(name, "array", "Parameter is geen array.")]
    if not value:
        return [_invalid(name, "minItems", "Array bevat minder dan 1 items.")]
    if len(value) > max_items:
        return [_invalid(name, "maxItems", f"Array bevat meer dan {max_items} items.")]
    errors = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not re.fullmatch(pattern, item):
            errors.append(_invalid(f"{name}[{i}]", "pattern", f"Waarde voldoet niet aan patroon {pattern}."))
        elif not exists(item) or (name == "fields" and item.split(".")[0] in AUTOMATIC_FIELDS):
            errors.append(_invalid(f"{name}[{i}]", "fields", "Parameter bevat een niet bestaande veldnaam."))
    return errors


def create_app(state: StandinState) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    def authenticate(request: Request) -> tuple[bool, frozenset[str] | None]:
        """(authenticated, fields it is authorised for; None = all)."""
        key = request.headers.get("X-API-KEY")
        with state.lock:
            if key is not None:
                return (key in state.api_keys, state.api_keys.get(key))
            auth = request.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                entry = state.tokens.get(auth[7:])
                if entry is not None and entry[1] > time.monotonic():
                    return (True, state.oauth_clients[entry[0]][1])
        return (False, None)

    async def gate(request: Request, route: str, body: Any) -> tuple[Response | None, frozenset[str] | None]:
        with state.lock:
            headers = {k: v for k, v in request.headers.items() if k.lower() in {"content-type", "accept"}}
            scheme = (
                "api-key"
                if "X-API-KEY" in request.headers
                else "bearer"
                if request.headers.get("Authorization", "").startswith("Bearer ")
                else None
            )
            state.requests.append(RecordedRequest(route, headers, body, scheme))
            delay = state.delay
        if delay:
            await asyncio.sleep(delay)
        fault = state._next_fault(route)
        if fault is not None:
            response = problem(
                fault.status, "Gesimuleerde fout.", code="simulated", instance=request.url.path
            )
            if fault.retry_after is not None:
                response.headers["Retry-After"] = fault.retry_after
            return response, None
        authenticated, authorised = authenticate(request)
        if not authenticated:
            response = problem(
                401, "Niet correct geauthenticeerd.", code="authentication", instance=request.url.path
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="brp"'
            return response, None
        return None, authorised

    @app.post(BRP_PATH + "/personen")
    async def personen(request: Request) -> Response:
        instance = BRP_PATH + "/personen"
        media_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        refused, authorised = await gate(request, "personen", body)
        if refused is not None:
            return refused
        if media_type != "application/json":
            return problem(415, "Unsupported Media Type", code="unsupported", instance=instance)
        invalid = validate_query(body)
        if invalid:
            return problem(
                400,
                "Een of meerdere parameters zijn niet correct.",
                code="paramsValidation",
                instance=instance,
                invalid=invalid,
            )
        assert isinstance(body, dict)  # validate_query saw to that
        fields: list[str] = body["fields"]
        if authorised is not None and not all(f in authorised for f in fields):
            return problem(
                403, "U bent niet geautoriseerd voor deze operatie.", code="authorization", instance=instance
            )
        sel = selection(fields)
        gemeente = body.get("gemeenteVanInschrijving")
        found = []
        with state.lock:
            tampered = dict(state.tampered)
        for bsn in dict.fromkeys(body["burgerservicenummer"]):
            persoon = state.personen.get(bsn)
            if persoon is None:
                continue
            if gemeente is not None and persoon.get("gemeenteVanInschrijving", {}).get("code") != gemeente:
                continue
            answer = apply_selection(persoon, sel)
            answer |= {k: persoon[k] for k in AUTOMATIC_FIELDS if k in persoon}
            if bsn in tampered:
                answer = tampered[bsn](copy.deepcopy(answer))
            found.append(answer)
        return JSONResponse({"type": "RaadpleegMetBurgerservicenummer", "personen": found})

    @app.post("/oauth/token")
    async def token(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        with state.lock:
            state.token_requests += 1
        fault = state._next_fault("token")
        if fault is not None:
            return JSONResponse({"error": "temporarily_unavailable"}, status_code=fault.status)
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        with state.lock:
            known = state.oauth_clients.get(client_id or "")
            if known is None or not secrets.compare_digest(known[0], secret or ""):
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            access_token = secrets.token_urlsafe(24)
            state.tokens[access_token] = (client_id or "", time.monotonic() + state.token_lifetime)
            lifetime = state.token_lifetime
        return JSONResponse(
            {"access_token": access_token, "token_type": "Bearer", "expires_in": lifetime},
            headers={"Cache-Control": "no-store"},
        )

    @app.get("/bronnen/inkomen/{bsn}")
    async def inkomen(bsn: str, request: Request) -> Response:
        refused, _ = await gate(request, "inkomen", None)
        if refused is not None:
            return refused
        if bsn not in state.personen:
            return problem(404, "Niet gevonden.", code="notFound", instance="/bronnen/inkomen")
        return JSONResponse({"resultaat": income_of(bsn), "meta": {"bron": "stand-in inkomen"}})

    @app.post("/bronnen/zaken")
    async def zaken(request: Request) -> Response:
        body = json.loads(await request.body() or b"null")
        refused, _ = await gate(request, "zaken", body)
        if refused is not None:
            return refused
        bsn = body.get("bsn") if isinstance(body, dict) else None
        if bsn not in state.personen:
            return JSONResponse({"data": None, "fout": "onbekend"}, status_code=404)
        return JSONResponse({"data": {"zaken": cases_of(bsn), "aantal": len(cases_of(bsn))}})

    return app


def income_of(bsn: str) -> Json:
    """Deterministic fictitious income for a test person."""
    seed = int(bsn)
    return {
        "jaar": 2025,
        "regels": [
            {"soort": "loon", "bedrag": 18_000 + seed % 40_000},
            {"soort": "toeslag", "bedrag": seed % 3_000},
        ],
        "interne_id": f"INK-{seed % 9973}",
    }


def cases_of(bsn: str) -> list[Json]:
    return [{"zaaknummer": f"Z-{int(bsn) % 100_000:05d}", "status": "in behandeling"}]


# -- running it --------------------------------------------------------------------------------


@dataclass
class StandinServer:
    state: StandinState
    base_url: str

    @property
    def brp_url(self) -> str:
        return self.base_url + BRP_PATH

    @property
    def token_url(self) -> str:
        return self.base_url + "/oauth/token"


@contextmanager
def serve(state: StandinState) -> Iterator[StandinServer]:
    """Run the stand-in with uvicorn in a background thread on 127.0.0.1, on a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(state),
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",
        http="h11",
        loop="asyncio",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="brp-standin", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the BRP stand-in did not start")
        time.sleep(0.01)
    try:
        yield StandinServer(state, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
