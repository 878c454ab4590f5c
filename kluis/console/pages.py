"""The console's pages under ``/fg``: overview, search, entry, findings, verification, reports, rules.

Routes parse, call the console service in units of work and render; every act that reads entries
(search, opening an entry, exports) is audited and committed before the entries are read.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from audit.errors import InvalidCursorError, ProofRequestError
from kluis.api.deps import NowDep, ServicesDep
from kluis.console import charts, jobs
from kluis.console.anomalies import N_, RULE_TITLES, RULES, RuleSet
from kluis.console.deps import Console, ConsoleDep, OfficerDep, context
from kluis.console.errors import InvalidSearchError, NotFoundError
from kluis.console.report import render_pdf
from kluis.console.schemas import Officer, Overview, SearchFilters
from kluis.console.services import local_period
from kluis.web.csrf import require_csrf
from kluis.web.deps import StateDep
from kluis.web.i18n import TIMEZONE
from kluis.web.render import language
from kluis.wiring import Services, utcnow

router = APIRouter(prefix="/fg", include_in_schema=False)
Csrf = Depends(require_csrf)
DEFAULT_DAYS = 14
MAX_DAYS = 366
SEARCHES = "fg_searches"  # session key: the officer's recent searches by opaque id
MAX_SEARCHES = 10
CODE = r"^[A-Za-z0-9._:-]{0,64}$"
DateQuery = Annotated[str | None, Query(max_length=10, pattern=r"^(\d{4}-\d{2}-\d{2})?$")]
DateForm = Annotated[str, Form(max_length=10, pattern=r"^(\d{4}-\d{2}-\d{2})?$")]
CodeForm = Annotated[str, Form(max_length=64, pattern=CODE)]
CursorQuery = Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9_=-]*$")]
FindingPath = Annotated[str, Path(max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]
OUTPUTS = {
    "entries-csv": ("entries", "csv", "text/csv; charset=utf-8", "csv"),
    "entries-json": ("entries", "jsonl", "application/x-ndjson; charset=utf-8", "jsonl"),
    "findings-csv": ("findings", "csv", "text/csv; charset=utf-8", "csv"),
    "findings-json": ("findings", "json", "application/json; charset=utf-8", "json"),
}
WEEKDAYS = (
    N_("Monday"),
    N_("Tuesday"),
    N_("Wednesday"),
    N_("Thursday"),
    N_("Friday"),
    N_("Saturday"),
    N_("Sunday"),
)
# The rule settings form: (rule, field, label, kind). Kinds: bool, number, time, list, days.
RULE_FIELDS: list[tuple[str, str, str, str]] = [
    ("off_hours", "start", N_("Office hours start"), "time"),
    ("off_hours", "end", N_("Office hours end"), "time"),
    ("off_hours", "workdays", N_("Working days"), "days"),
    ("volume_spike", "factor", N_("Times the usual daily volume"), "number"),
    ("volume_spike", "min_residents", N_("At least this many residents a day"), "number"),
    ("volume_spike", "baseline_days", N_("Usual volume over this many days"), "number"),
    ("repeated_denials", "threshold", N_("Refusals"), "number"),
    ("repeated_denials", "window_minutes", N_("Within this many minutes"), "number"),
    ("grant_end", "margin_minutes", N_("Minutes before or after the end"), "number"),
    ("special_category", "categories", N_("Special categories (separated by commas)"), "list"),
    ("special_category", "lookback_days", N_("Request history of this many days"), "number"),
    ("legal_basis_volume", "max_reads_per_day", N_("At most this many reads a day"), "number"),
    ("legal_basis_volume", "bases", N_("Legal bases (separated by commas)"), "list"),
]


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _period(van: str | None, tot: str | None, now: datetime, default_days: int) -> tuple[date, date]:
    """The chosen local days (both included), defaulting to the last ``default_days``; at most a year."""
    today = now.astimezone(TIMEZONE).date()
    until = _day(tot) or today
    since = _day(van) or until - timedelta(days=default_days - 1)
    if since > until:
        since, until = until, since
    since = max(since, until - timedelta(days=MAX_DAYS - 1))
    return since, until


def _t(console: Console, request: Request) -> Callable[[str], str]:
    lang = language(request)
    return lambda message: console.templates.gettext(lang, message)


def _names(services: Services, officer: Officer, lang: str) -> dict[str, dict[str, str]]:
    """What the forms offer and the pages name: departments, clients, purposes, categories."""
    with services.db.read_session() as session:
        departments = {d.code: d.name for d in services.departments.list(session, officer.tenant_id)}
        clients = {c.id: f"{c.name} ({d.code})" for c, d in services.clients.list(session, officer.tenant_id)}
        purposes = {
            p.code: f"{p.code}: {p.description_nl if lang == 'nl' else p.description_en}"[:80]
            for p in services.purposes.list(session, officer.tenant_id)
        }
        categories = {c.code: c.title for c in services.vault.categories(session, officer.tenant_id)}
    return {"departments": departments, "clients": clients, "purposes": purposes, "categories": categories}


def _dates(filters: SearchFilters) -> dict[str, str]:
    """The search's period as the form's local dates (``until`` is exclusive: the day before)."""
    since = filters.since.astimezone(TIMEZONE).date().isoformat() if filters.since else ""
    until = (
        (filters.until - timedelta(days=1)).astimezone(TIMEZONE).date().isoformat() if filters.until else ""
    )
    return {"van": since, "tot": until}


# -- overview -------------------------------------------------------------------------------------
def _charts(
    overview: Overview, departments: dict[str, str], category_names: dict[str, str], t: Callable[[str], str]
) -> dict[str, Any]:
    days = [overview.since + timedelta(days=n) for n in range((overview.until - overview.since).days + 1)]
    labels = [d.strftime("%d-%m") for d in days]
    index = {d: n for n, d in enumerate(days)}
    codes = sorted({s.department or "" for s in overview.days})
    per_department = {code: [0] * len(days) for code in codes}
    allowed, denied = [0] * len(days), [0] * len(days)
    for s in overview.days:
        n = index.get(s.day)
        if n is None:
            continue
        per_department[s.department or ""][n] += s.total
        allowed[n] += s.allowed
        denied[n] += s.denied
    palette = charts.colours(len(codes))
    series = [
        charts.Series(
            departments.get(code, code) if code else t(N_("(no department)")), per_department[code], colour
        )
        for code, colour in zip(codes, palette, strict=True)
    ]
    decision = [
        charts.Series(t(N_("Allowed")), allowed, charts.PALETTE[2]),
        charts.Series(t(N_("Refused")), denied, charts.PALETTE[1]),
    ]
    categories = [(category_names.get(code, code), count) for code, count in overview.categories.items()]
    return {
        "labels": labels,
        "days": days,
        "series": series,
        "decision": decision,
        "by_department": charts.stacked_bars(
            "chart-departments",
            t(N_("Reads per day per department")),
            t(N_("For each day the reads of each department, stacked. The table below has the numbers.")),
            labels,
            series,
        ),
        "by_decision": charts.stacked_bars(
            "chart-decisions",
            t(N_("Allowed and refused reads per day")),
            t(N_("For each day the allowed and refused reads, stacked. The table below has the numbers.")),
            labels,
            decision,
        ),
        "by_category": charts.horizontal_bars(
            "chart-categories",
            t(N_("Reads per category")),
            t(N_("One bar per category, as long as its number of reads. The table below has the numbers.")),
            categories,
        ),
        "categories": categories,
    }


@router.get("/overzicht")
def overview_page(
    request: Request,
    officer: OfficerDep,
    console: ConsoleDep,
    services: ServicesDep,
    now: NowDep,
    van: DateQuery = None,
    tot: DateQuery = None,
) -> Response:
    since, until = _period(van, tot, now, DEFAULT_DAYS)
    with services.db.read_session() as session:
        overview = console.service.overview(session, officer.tenant_id, since, until, TIMEZONE)
    names = _names(services, officer, language(request))
    return console.templates.render(
        request,
        "console/overview.html",
        officer=officer,
        overview=overview,
        names=names,
        charts=_charts(overview, names["departments"], names["categories"], _t(console, request)),
        van=since.isoformat(),
        tot=until.isoformat(),
    )


# -- search ---------------------------------------------------------------------------------------
def _stored_search(state: Any, search_id: str) -> SearchFilters:
    found = state.data.get(SEARCHES, {}).get(search_id)
    if not isinstance(found, dict):
        raise NotFoundError
    return SearchFilters.from_json(found)


@router.get("/zoeken")
def search_page(
    request: Request,
    officer: OfficerDep,
    console: ConsoleDep,
    services: ServicesDep,
    state: StateDep,
    now: NowDep,
    zoekopdracht: Annotated[str | None, Query(max_length=32, pattern=r"^[A-Za-z0-9_-]+$")] = None,
    na: CursorQuery = None,
) -> Response:
    names = _names(services, officer, language(request))
    if zoekopdracht is None:
        return console.templates.render(
            request,
            "console/search.html",
            officer=officer,
            names=names,
            filters=SearchFilters(),
            dates=_dates(SearchFilters()),
            page=None,
        )
    filters = _stored_search(state, zoekopdracht)
    with services.db.session() as session:
        console.service.log_search(
            session, context(request, officer, now), officer.tenant_id, filters, page=bool(na)
        )
    with services.db.read_session() as session:
        try:
            page = console.service.search(session, officer.tenant_id, filters, cursor=na or None)
        except InvalidCursorError:
            raise NotFoundError from None
    return console.templates.render(
        request,
        "console/search.html",
        officer=officer,
        names=names,
        filters=filters,
        dates=_dates(filters),
        page=page,
        search_id=zoekopdracht,
        cursor=na,
    )


@router.post("/zoeken", dependencies=[Csrf])
def search(
    request: Request,
    officer: OfficerDep,
    console: ConsoleDep,
    services: ServicesDep,
    state: StateDep,
    van: DateForm = "",
    tot: DateForm = "",
    afdeling: CodeForm = "",
    client: CodeForm = "",
    doel: CodeForm = "",
    categorie: CodeForm = "",
    besluit: Annotated[Literal["", "allow", "deny"], Form()] = "",
    bsn: Annotated[str, Form(max_length=11)] = "",
) -> Response:
    """Store the search under an opaque id and show its results. The BSN is turned into the
    data subject's audit pseudonym here and forgotten: it never reaches a URL, a page or a log."""
    since, until = _day(van), _day(tot)
    names = _names(services, officer, language(request))
    # Only codes this municipality knows: nothing typed by hand ends up in the audit entry.
    for value, known in (
        (afdeling, names["departments"]),
        (client, names["clients"]),
        (doel, names["purposes"]),
        (categorie, names["categories"]),
    ):
        if value and value not in known:
            raise InvalidSearchError("filter")
    subject: str | None = None
    typed = bsn.strip().replace(" ", "")
    if typed:
        with services.db.read_session() as session:
            try:
                subject = console.service.subject_of(session, officer.tenant_id, typed)
            except InvalidSearchError:
                return console.templates.render(
                    request,
                    "console/search.html",
                    status=400,
                    officer=officer,
                    names=names,
                    filters=SearchFilters(),
                    dates=_dates(SearchFilters()),
                    page=None,
                    bsn_error=True,
                )
    filters = SearchFilters(
        since=local_period(since, since, TIMEZONE).since if since else None,
        until=local_period(until, until, TIMEZONE).until if until else None,
        department=afdeling or None,
        client_id=client or None,
        purpose=doel or None,
        category=categorie or None,
        decision=besluit or None,
        subject=subject,
        subject_given=bool(typed),
    )
    searches: dict[str, Any] = dict(state.data.get(SEARCHES) or {})
    while len(searches) >= MAX_SEARCHES:
        searches.pop(next(iter(searches)))
    search_id = secrets.token_urlsafe(12)
    searches[search_id] = filters.to_json()
    state.data[SEARCHES] = searches
    return RedirectResponse(f"/fg/zoeken?zoekopdracht={search_id}", status_code=303)


@router.get("/logregels/{seq}")
def entry_page(
    request: Request,
    seq: Annotated[int, Path(ge=0, le=2**53)],
    officer: OfficerDep,
    console: ConsoleDep,
    services: ServicesDep,
    now: NowDep,
) -> Response:
    with services.db.read_session() as session:
        try:
            detail = console.service.entry(session, officer.tenant_id, seq)
        except ProofRequestError:
            raise NotFoundError from None
    with services.db.session() as session:
        console.service.log_view(session, context(request, officer, now), officer.tenant_id, detail.entry)
    return console.templates.render(
        request,
        "console/entry.html",
        officer=officer,
        detail=detail,
        names=_names(services, officer, language(request)),
    )


# -- findings -------------------------------------------------------------------------------------
def _readable(params: dict[str, Any], names: dict[str, dict[str, str]]) -> dict[str, Any]:
    """A finding's parameters with clients and departments by name instead of by id."""
    shown = dict(params)
    if isinstance(shown.get("who"), str):
        shown["who"] = names["clients"].get(shown["who"], shown["who"])
    if isinstance(shown.get("department"), str):
        shown["department"] = names["departments"].get(shown["department"], shown["department"])
    return shown


@router.get("/bevindingen")
def findings_page(
    request: Request,
    officer: OfficerDep,
    console: ConsoleDep,
    services: ServicesDep,
    status: Literal["open", "reviewed", "all"] = "open",
    na: CursorQuery = None,
    nieuw: Annotated[int | None, Query(ge=0)] = None,
    bijgewerkt: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    with services.db.read_session() as session:
        try:
            findings, next_cursor = console.service.findings(
                session, officer.tenant_id, status=None if status == "all" else status, cursor=na or None
            )
        except InvalidSearchError:
            raise NotFoundError from None
    names = _names(services, officer, language(request))
    return console.templates.render(
        request,
        "console/findings.html",
        officer=officer,
        findings=[(f, _readable(f.params, names)) for f in findings],
        next_cursor=next_cursor,
        shown=status,
        titles=RULE_TITLES,
        analysed=(nieuw, bijgewerkt) if nieuw is not None and bijgewerkt is not None else None,
    )


@router.post("/bevindingen/analyseren", dependencies=[Csrf])
def analyse_now(officer: OfficerDep, console: ConsoleDep, services: ServicesDep, now: NowDep) -> Response:
    """Run the rules over the last seven days now (the scheduled job does the last two)."""
    since, until = _period(None, None, now, 7)
    result = jobs.analyse(
        services, console.service, officer.tenant_id, local_period(since, until, TIMEZONE), now
    )
    return RedirectResponse(
        f"/fg/bevindingen?nieuw={result.new}&bijgewerkt={result.updated}", status_code=303
    )


@router.get("/bevindingen/{finding_id}")
def finding_page(
    request: Request,
    finding_id: FindingPath,
    officer: OfficerDep,
    console: ConsoleDep,
    services: ServicesDep,
    now: NowDep,
) -> Response:
    with services.db.session() as session:
        finding = console.service.finding(session, officer.tenant_id, finding_id)
        # Recorded before the entries are read: the officer sees them as a search's results.
        console.service.log_finding_view(session, context(request, officer, now), officer.tenant_id, finding)
    with services.db.read_session() as session:
        entries = console.service.finding_entries(session, officer.tenant_id, finding)
    names = _names(services, officer, language(request))
    return console.templates.render(
        request,
        "console/finding.html",
        officer=officer,
        finding=finding,
        names=names,
        params=_readable(finding.params, names),
        entries=entries,
        titles=RULE_TITLES,
        note_error=request.query_params.get("fout") == "1",
    )


@router.post("/bevindingen/{finding_id}/beoordelen", dependencies=[Csrf])
def review(
    request: Request,
    finding_id: FindingPath,
    officer: OfficerDep,
    console: ConsoleDep,
    services: ServicesDep,
    now: NowDep,
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    with services.db.session() as session:
        try:
            console.service.review(
                session, context(request, officer, now), officer.tenant_id, finding_id, note
            )
        except InvalidSearchError:
            return RedirectResponse(f"/fg/bevindingen/{finding_id}?fout=1", status_code=303)
    return RedirectResponse(f"/fg/bevindingen/{finding_id}", status_code=303)


# -- verification ---------------------------------------------------------------------------------
@router.get("/controle")
def verification_page(
    request: Request, officer: OfficerDep, console: ConsoleDep, services: ServicesDep
) -> Response:
    with services.db.read_session() as session:
        runs = console.service.verifications(session, officer.tenant_id)
        checkpoint = console.service.checkpoint(session, officer.tenant_id)
    return console.templates.render(
        request,
        "console/verification.html",
        officer=officer,
        runs=runs,
        checkpoint=checkpoint,
        scheduled=jobs.interval(services.settings),
        full_hours=services.settings.audit_full_verify_interval_hours,
    )


@router.post("/controle", dependencies=[Csrf])
def verify_now(
    request: Request, officer: OfficerDep, console: ConsoleDep, services: ServicesDep, now: NowDep
) -> Response:
    jobs.verify(
        services,
        console.service,
        context(request, officer, now),
        officer.tenant_id,
        trigger="button",
        clock=utcnow,
    )
    return RedirectResponse("/fg/controle", status_code=303)


# -- reports --------------------------------------------------------------------------------------
@router.get("/rapportage")
def reports_page(request: Request, officer: OfficerDep, console: ConsoleDep, now: NowDep) -> Response:
    since, until = _period(None, None, now, 30)
    return console.templates.render(
        request, "console/reports.html", officer=officer, van=since.isoformat(), tot=until.isoformat()
    )


@router.post("/rapportage", dependencies=[Csrf])
def report_download(
    request: Request,
    officer: OfficerDep,
    console: ConsoleDep,
    services: ServicesDep,
    now: NowDep,
    uitvoer: Annotated[
        Literal["entries-csv", "entries-json", "findings-csv", "findings-json", "pdf"], Form()
    ],
    van: DateForm = "",
    tot: DateForm = "",
) -> Response:
    """A download of a period: entries or findings as CSV/JSON, or the PDF report. Audited first."""
    since, until = _period(van or None, tot or None, now, 30)
    period = local_period(since, until, TIMEZONE)
    ctx = context(request, officer, now)
    stem = f"kluis-{since.isoformat()}-{until.isoformat()}"
    if uitvoer == "pdf":
        with services.db.session() as session:
            console.service.log_export(session, ctx, officer.tenant_id, "report", "pdf", period)
        with services.db.read_session() as session:
            facts = console.service.report(session, officer.tenant_id, period, now)
        lang = language(request)
        body = render_pdf(facts, lambda m: console.templates.gettext(lang, m), lang, TIMEZONE)
        return _download(body, "application/pdf", f"{stem}-verwerkingen.pdf")
    what, fmt, media_type, extension = OUTPUTS[uitvoer]
    with services.db.session() as session:
        console.service.log_export(session, ctx, officer.tenant_id, what, fmt, period)
    out = io.StringIO()
    with services.db.read_session() as session:
        if what == "entries":
            console.service.export_entries(session, officer.tenant_id, period, fmt, out)
        else:
            console.service.export_findings(session, officer.tenant_id, period, fmt, out)
    return _download(out.getvalue().encode(), media_type, f"{stem}-{what}.{extension}")


def _download(body: bytes, media_type: str, filename: str) -> Response:
    return Response(
        body,
        media_type=media_type,
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


# -- rule settings --------------------------------------------------------------------------------
async def form_data(request: Request) -> FormData:
    return await request.form()


def _rules_from_form(form: FormData) -> dict[str, Any]:
    settings: dict[str, Any] = {"timezone": str(form.get("timezone") or "Europe/Amsterdam")}
    for code in RULES:
        settings[code] = {"enabled": form.get(f"{code}.enabled") == "on"}
    for rule, field, _label, kind in RULE_FIELDS:
        key = f"{rule}.{field}"
        if kind == "days":
            settings[rule][field] = [v for v in form.getlist(key) if isinstance(v, str)]
        elif kind == "list":
            text = str(form.get(key) or "")
            settings[rule][field] = [
                part.strip() for part in text.replace(";", ",").split(",") if part.strip()
            ]
        else:
            settings[rule][field] = str(form.get(key) or "")
    return settings


def _rules_page(
    request: Request, console: Console, officer: Officer, rules: RuleSet, **extra: Any
) -> Response:
    values = rules.model_dump(mode="json")
    return console.templates.render(
        request,
        "console/rules.html",
        status=400 if extra.get("errors") else 200,
        officer=officer,
        rules=values,
        fields=RULE_FIELDS,
        order=RULES,
        titles=RULE_TITLES,
        weekdays=WEEKDAYS,
        **extra,
    )


@router.get("/regels")
def rules_page(request: Request, officer: OfficerDep, console: ConsoleDep, services: ServicesDep) -> Response:
    with services.db.read_session() as session:
        rules = console.service.rules(session, officer.tenant_id)
    return _rules_page(request, console, officer, rules, saved=request.query_params.get("opgeslagen") == "1")


@router.post("/regels", dependencies=[Csrf])
def save_rules(
    request: Request,
    officer: OfficerDep,
    console: ConsoleDep,
    services: ServicesDep,
    now: NowDep,
    form: Annotated[FormData, Depends(form_data)],
) -> Response:
    submitted = _rules_from_form(form)
    try:
        rules = RuleSet.model_validate(submitted)
    except ValidationError as exc:
        errors = sorted({".".join(str(p) for p in e["loc"][:2]) for e in exc.errors()})
        with services.db.read_session() as session:
            current = console.service.rules(session, officer.tenant_id)
        return _rules_page(request, console, officer, current, errors=errors)
    with services.db.session() as session:
        console.service.save_rules(session, context(request, officer, now), officer.tenant_id, rules)
    return RedirectResponse("/fg/regels?opgeslagen=1", status_code=303)
