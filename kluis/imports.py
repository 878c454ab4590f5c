"""Imports from source registries: the shell's half of the connectors.

``connectors`` fetches, maps and validates (it knows nothing of storage or the audit log); this
module stores what it returns in the vault and audits every attempt:

- :class:`Connectors`: the deployment's connector registries, one per tenant, built on first use
  from the JSON file ``KLUIS_CONNECTORS_FILE`` (default ``<data dir>/connectors.json``), the
  tenant's *registered* category schemas (every answer is validated against them before anything
  is stored) and the secrets the file names, read from ``KLUIS_CONNECTOR_SECRET_*`` variables.
- :func:`import_one`: one resident from one source (``kluis import --bsn``).
- :func:`import_all`: many residents, in windows, with a persisted cursor so that an interrupted
  run resumes where it stopped (``kluis import --all`` / ``--bsn-file``).
- :func:`refresh_granted`: a department refreshes its resident's record from the tenant's source
  for that category, where its grant covers the category and allows writing it.

Every attempt leaves one audit entry. Success: ``vault:record:imported`` with the source, written in
the same transaction as the record. Failure: nothing is stored, and ``vault:record:import_failed``
(status error, the connector's ``reason`` code, the category, the resident's audit pseudonym when
the resident is known) is committed in its own transaction. A BSN is never logged, printed, put in
an audit entry or in the cursor file: operators see positions (line numbers) and resident ids.

    ConnectorError (connectors)       what a failed import raises; ``reason`` is audited
    BulkStateError                    a bulk run cannot start or resume (the cursor file disagrees)
    VaultError (vault)                unknown tenant or resident, invalid BSN, erased resident
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import SecretStr
from sqlmodel import Session, col, select

from audit import tags
from connectors import (
    BulkProgress,
    ConnectorError,
    ConnectorRegistry,
    FetchedRecord,
    InvalidAnswerError,
    SourceConnector,
    SourceForbiddenError,
    SourceRequestError,
    SourceUnavailableError,
    UnknownSourceError,
)
from connectors import import_all as bulk_import
from connectors.errors import ConnectorConfigError
from kluis.settings import CONNECTOR_SECRET_PREFIX, Settings
from vault.bsn import is_valid_bsn
from vault.errors import (
    DuplicateResidentError,
    InvalidRecordError,
    ResidentErasedError,
    ResidentNotFoundError,
)
from vault.models import Resident, Tenant
from vault.schemas import AccessGrant, RecordSummary
from vault.services import Context, VaultService

if TYPE_CHECKING:
    from kluis.wiring import Services

Details = dict[str, str | int | bool | None]

_SECRET_REF = re.compile(re.escape(CONNECTOR_SECRET_PREFIX) + r"[A-Z0-9_]{1,64}")
_REF_KEYS = ("key_ref", "client_secret_ref")
_INLINE_SECRET_KEYS = ("key", "client_secret")
#: BSNs per request window of a bulk run (the BRP Personen API takes at most 20).
BULK_WINDOW = 20


# -- configuration ---------------------------------------------------------------------------------


def read_config(path: Path) -> dict[str, Any]:
    """The connector configuration file as JSON; :class:`ConnectorConfigError` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConnectorConfigError(
            f"no connector configuration: create {path} or set KLUIS_CONNECTORS_FILE"
        ) from None
    except (OSError, UnicodeDecodeError):
        raise ConnectorConfigError(f"cannot read the connector configuration {path}") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConnectorConfigError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(config, dict):
        raise ConnectorConfigError(f"{path} must hold a JSON object")
    return config


def _auth_sections(config: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(where, auth)`` for every source's ``auth`` object (the shape is checked by connectors)."""
    tenants = config.get("tenants")
    if not isinstance(tenants, dict):
        return
    for tenant, sources in tenants.items():
        if not isinstance(sources, dict):
            continue
        for source, source_config in sources.items():
            auth = source_config.get("auth") if isinstance(source_config, dict) else None
            if isinstance(auth, dict):
                yield f"tenants.{tenant}.{source}.auth", auth


def resolve_secrets(config: Mapping[str, Any], available: Mapping[str, SecretStr]) -> dict[str, str]:
    """The secrets ``config`` refers to, from ``available`` (the ``KLUIS_CONNECTOR_SECRET_*``
    environment variables); refuses secrets written in the file itself."""
    found: dict[str, str] = {}
    for where, auth in _auth_sections(config):
        for key in _INLINE_SECRET_KEYS:
            if key in auth:
                raise ConnectorConfigError(
                    f"{where}.{key}: secrets do not belong in the configuration file; use {key}_ref"
                    f" naming an environment variable {CONNECTOR_SECRET_PREFIX}<NAME>"
                )
        for key in _REF_KEYS:
            ref = auth.get(key)
            if ref is None:
                continue
            if not isinstance(ref, str) or not _SECRET_REF.fullmatch(ref):
                raise ConnectorConfigError(
                    f"{where}.{key} must name an environment variable {CONNECTOR_SECRET_PREFIX}<NAME>"
                    " (upper-case letters, digits and underscores)"
                )
            value = available.get(ref)
            if value is None or not value.get_secret_value():
                raise ConnectorConfigError(f"{where}.{key}: the environment variable {ref} is not set")
            found[ref] = value.get_secret_value()
    return found


class Connectors:
    """The connector registries of one deployment, one per tenant, built on first use.

    The configuration file is read once; a tenant's registry is built with that tenant's category
    schemas and kept (its circuit breakers and connection pools live as long as the process).
    Thread-safe: the API builds registries from worker threads.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._config: dict[str, Any] | None = None
        self._registries: dict[str, ConnectorRegistry] = {}

    def _tenant_config(self, slug: str) -> dict[str, Any]:
        with self._lock:
            if self._config is None:
                self._config = read_config(self._settings.resolved_connectors_file)
            config = self._config
        tenants = config.get("tenants")
        if not isinstance(tenants, dict):
            return config  # let the connectors' own validation name the problem
        extra = {k: v for k, v in config.items() if k != "tenants"}
        return {**extra, "tenants": {slug: tenants[slug]} if slug in tenants else {}}

    def for_tenant(self, vault: VaultService, session: Session, tenant: Tenant) -> ConnectorRegistry:
        """The tenant's registry; raises :class:`ConnectorConfigError` when it cannot be built."""
        with self._lock:
            cached = self._registries.get(tenant.id)
        if cached is not None:
            return cached
        config = self._tenant_config(tenant.slug)
        schemas = {c.code: json.loads(c.json_schema) for c in vault.categories(session, tenant.id)}
        registry = ConnectorRegistry.from_config(
            config,
            schemas=schemas,
            secrets=resolve_secrets(config, self._settings.connector_secrets),
            require_https=self._settings.is_production,
        )
        with self._lock:
            kept = self._registries.setdefault(tenant.id, registry)
        if kept is not registry:  # another thread was first
            registry.close()
        return kept

    def close(self) -> None:
        with self._lock:
            registries = list(self._registries.values())
            self._registries.clear()
        for registry in registries:
            registry.close()


# -- one resident ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportedRecord:
    """A stored import: the record's new version, and whether the resident was added for it."""

    resident_id: str
    created: bool
    summary: RecordSummary


def _category(connector: SourceConnector, wanted: str | None) -> str:
    if wanted is None:
        if len(connector.categories) != 1:
            raise UnknownSourceError("this source delivers several categories: name one")
        return next(iter(connector.categories))
    if wanted not in connector.categories:
        raise UnknownSourceError("this source does not deliver that category")
    return wanted


def error_details(error: ConnectorError) -> Details:
    """What is safe to audit about a connector error: codes, statuses, JSON pointers; no values."""
    if isinstance(error, SourceUnavailableError):
        return {"cause": error.cause[:64], "attempts": error.attempts}
    if isinstance(error, SourceForbiddenError):
        return {"http_status": error.status}
    if isinstance(error, SourceRequestError):
        return {"http_status": error.status, "invalid_params": ",".join(error.invalid_params)[:200] or None}
    if isinstance(error, InvalidAnswerError):
        return {"problem": error.problem[:120], "path": error.path[:200] or None, "keyword": error.keyword}
    return {}


def record_failure(
    services: Services,
    ctx: Context,
    tenant_id: str,
    reason: str,
    *,
    source: str | None,
    category: str | None,
    resident: Resident | None = None,
    grant: AccessGrant | None = None,
    details: Details | None = None,
    session: Session | None = None,
) -> None:
    """Commit one ``vault:record:import_failed`` entry: in ``session`` (rolled back first, nothing
    of the import stays) or in a unit of work of its own."""
    with contextlib.ExitStack() as stack:
        if session is None:
            session = stack.enter_context(services.db.session())
        else:
            session.rollback()
        services.vault.audit(
            session,
            ctx,
            tenant_id,
            tags.RECORD_IMPORT_FAILED,
            resident=resident,
            decision="allow",
            status="error",
            reason=reason,
            categories=[category] if category else [],
            grant=grant,
            details={"source": source, **(details or {})},
        )
        session.commit()


def _store(
    services: Services,
    ctx: Context,
    tenant: Tenant,
    record: FetchedRecord,
    *,
    bsn: str,
    resident: Resident | None,
    grant: AccessGrant | None = None,
    extra: Details | None = None,
) -> ImportedRecord:
    """Store a fetched record (adding the resident first when ``resident`` is None and they are
    not in the vault yet). A record the vault refuses is audited as a failed import.

    ``resident`` was read before the fetch, which takes a while: the row is read again, locked,
    in the writing transaction, so that a resident erased meanwhile gets no record.
    """
    with services.db.session() as session:
        created = False
        if resident is None:
            try:
                resident = services.vault.resident_by_bsn(session, tenant.id, bsn)
            except ResidentNotFoundError:
                try:
                    resident = services.vault.add_resident(session, ctx, tenant, bsn)
                    created = True
                except DuplicateResidentError:  # added by someone else meanwhile
                    session.rollback()
                    resident = services.vault.resident_by_bsn(session, tenant.id, bsn)
        failure: str | None = None
        try:  # put_record locks the resident and refuses one erased meanwhile
            summary = services.vault.put_record(
                session,
                ctx,
                resident,
                record.category,
                record.data,
                source=record.source,
                grant=grant,
                event_name=tags.RECORD_IMPORTED,
            )
        except InvalidRecordError:
            failure = "invalid_answer"
        except ResidentErasedError:
            failure = "resident_erased"
        if failure is not None:
            record_failure(
                services,
                ctx,
                tenant.id,
                failure,
                source=record.source,
                category=record.category,
                resident=resident,
                grant=grant,
                details={
                    **({"problem": "refused by the vault"} if failure == "invalid_answer" else {}),
                    **(extra or {}),
                },
                session=session,
            )
            if failure == "invalid_answer":
                raise InvalidAnswerError("the vault refused the record")
            raise ResidentErasedError
    return ImportedRecord(resident.id, created, summary)


def import_one(
    services: Services,
    tenant: str,
    bsn: str,
    source: str,
    ctx: Context,
    *,
    create_resident: bool,
    category: str | None = None,
) -> ImportedRecord:
    """Fetch one resident's record from ``source`` and store it as a new version.

    Without ``create_resident`` the resident must already be in the vault (else
    :class:`ResidentNotFoundError`, and nothing is sent to the source). With it, a resident who is
    not in the vault yet is added, but only once the source delivered a valid record: a BSN the
    source does not know leaves no empty vault behind. Raises the :class:`ConnectorError` of a
    failed import after auditing it.
    """
    resident: Resident | None = None
    with services.db.read_session() as session:
        t = services.vault.tenant(session, tenant)
        try:
            resident = services.vault.resident_by_bsn(session, t.id, bsn)
        except ResidentNotFoundError:
            if not create_resident:
                raise
    try:
        with services.db.read_session() as session:
            registry = services.connectors.for_tenant(services.vault, session, t)
        connector = registry.get(t.slug, source)
        category = _category(connector, category)
        record = connector.fetch(bsn, category)
    except ConnectorError as exc:
        record_failure(
            services,
            ctx,
            t.id,
            exc.reason,
            source=source,
            category=category,
            resident=resident,
            details=error_details(exc),
        )
        raise
    return _store(services, ctx, t, record, bsn=bsn, resident=resident)


# -- a department's refresh -------------------------------------------------------------------------


def refresh_granted(services: Services, ctx: Context, grant: AccessGrant, category: str) -> RecordSummary:
    """Refresh the grant's resident's ``category`` record from the tenant's source for it.

    The grant must cover the category and allow writing it (else the refusal is audited and
    :class:`AccessDeniedError` raised); every other failure is audited as a failed import and its
    :class:`ConnectorError` raised.
    """
    with services.db.read_session() as session:
        resident, reason = services.vault.check_grant(session, grant, category, ctx.now, write=True)
        tenant = session.get(Tenant, grant.tenant_id)
    if reason is not None or resident is None or tenant is None:
        with services.db.session() as session:
            raise services.vault.deny(
                session, ctx, grant, tags.RECORD_IMPORTED, reason or "resident_unknown", [category], resident
            )
    source: str | None = None
    try:
        with services.db.read_session() as session:
            registry = services.connectors.for_tenant(services.vault, session, tenant)
        connector = registry.for_category(tenant.slug, category)
        source = connector.name
        bsn = services.vault.reveal_bsn(resident)
        record = connector.fetch(bsn, category)
    except ConnectorError as exc:
        record_failure(
            services,
            ctx,
            tenant.id,
            exc.reason,
            source=source,
            category=category,
            resident=resident,
            grant=grant,
            details=error_details(exc),
        )
        raise
    return _store(services, ctx, tenant, record, bsn=bsn, resident=resident, grant=grant).summary


# -- many residents ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BulkInput:
    """What a bulk run goes through, in order, and how an operator finds each item again.

    ``labels[i]`` names item ``i``: its line number in a BSN file, or the resident's opaque id.
    ``residents`` holds the residents already known by BSN (the ``--all`` input).
    """

    kind: Literal["bsn-file", "all"]
    bsns: tuple[str, ...] = field(repr=False)
    labels: tuple[int | str, ...]
    residents: Mapping[str, Resident] = field(default_factory=dict, repr=False)
    #: Line numbers of repeated BSNs in a file (imported once, at their first line).
    duplicates: tuple[int, ...] = ()


def parse_bsn_lines(lines: Iterable[str]) -> BulkInput:
    """One BSN per line; blank lines and ``#`` comments are ignored, repeats imported once."""
    bsns: list[str] = []
    labels: list[int | str] = []
    duplicates: list[int] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        if item in seen:
            duplicates.append(number)
            continue
        seen.add(item)
        bsns.append(item)
        labels.append(number)
    return BulkInput("bsn-file", tuple(bsns), tuple(labels), duplicates=tuple(duplicates))


def vault_residents(services: Services, tenant: str) -> BulkInput:
    """Every resident of the tenant in the vault (not erased), oldest first."""
    with services.db.read_session() as session:
        t = services.vault.tenant(session, tenant)
        rows = session.exec(
            select(Resident)
            .where(Resident.tenant_id == t.id, col(Resident.erased_at).is_(None))
            .order_by(col(Resident.created_at), col(Resident.id))
        ).all()
    residents = {services.vault.reveal_bsn(r): r for r in rows}
    return BulkInput("all", tuple(residents), tuple(r.id for r in residents.values()), residents=residents)


class BulkStateError(Exception):
    """A bulk run cannot start or resume; the message says what to do (no personal data)."""


@dataclass
class BulkState:
    """The persisted progress of a bulk run: positions and counts only, never a BSN.

    ``cursor`` is the number of input items handled; ``skipped`` the positions of invalid BSNs
    (never sent), ``failed`` the positions per reason code; ``stopped`` the reason code of the
    error that stopped the last attempt early (it can be resumed).
    """

    tenant: str
    source: str
    category: str
    input: str
    fingerprint: str
    total: int
    started_at: str
    updated_at: str
    cursor: int = 0
    imported: int = 0
    created: int = 0
    skipped: list[int] = field(default_factory=list)
    failed: dict[str, list[int]] = field(default_factory=dict)
    stopped: str | None = None
    resumed_from: int | None = None

    @property
    def completed(self) -> bool:
        return self.stopped is None and self.cursor >= self.total

    @property
    def failed_count(self) -> int:
        return sum(len(p) for p in self.failed.values())

    def progress(self) -> BulkProgress:
        return BulkProgress(self.cursor, self.total, self.imported, len(self.skipped), self.failed_count)

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: Any) -> BulkState:
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError("unknown cursor file version")
        fields = {f.name for f in dataclasses.fields(cls)}
        state = cls(**{k: v for k, v in data.items() if k in fields})
        numbers = (state.cursor, state.total, state.imported, state.created)
        if not all(type(n) is int and n >= 0 for n in numbers) or not (
            isinstance(state.skipped, list) and isinstance(state.failed, dict)
        ):
            raise ValueError("a damaged cursor file")
        positions = [*state.skipped, *(p for ps in state.failed.values() for p in ps)]
        if not all(type(p) is int and 0 <= p < state.total for p in positions):
            raise ValueError("a damaged cursor file")
        return state


def state_path(state_dir: Path, tenant: str, source: str) -> Path:
    return state_dir / f"{tenant}-{source}.json"


def _load_state(path: Path) -> BulkState | None:
    try:
        return BulkState.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        raise BulkStateError(f"the cursor file {path} is unreadable: remove it to start over") from None


def _save_state(path: Path, state: BulkState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(state.to_json(), fh)
    tmp.replace(path)


def _fingerprint(services: Services, tenant: Tenant, bsns: Sequence[str]) -> str:
    """A keyed fingerprint of the input, so a resume refuses a changed list (not reversible)."""
    digest = hashlib.sha256("\n".join(bsns).encode()).digest()
    return services.keys.pseudonym(tenant.id, b"import-input:" + digest).hex()


def _begin(path: Path, fresh: BulkState, *, resume: bool, restart: bool) -> BulkState:
    previous = _load_state(path)
    if resume:
        if previous is None or previous.completed:
            raise BulkStateError("there is no interrupted import of this source to resume")
        same = (previous.tenant, previous.source, previous.category, previous.input, previous.total)
        if same != (fresh.tenant, fresh.source, fresh.category, fresh.input, fresh.total) or (
            previous.fingerprint != fresh.fingerprint
        ):
            raise BulkStateError(
                "the input differs from the interrupted run's: resume with the same input,"
                " or start over with --restart"
            )
        previous.stopped = None
        previous.resumed_from = previous.cursor
        return previous
    if previous is not None and not previous.completed and not restart:
        raise BulkStateError(
            f"an interrupted import of this source exists ({previous.cursor} of {previous.total}"
            " handled): continue it with --resume, or start over with --restart"
        )
    return fresh


def import_all(
    services: Services,
    tenant: str,
    source: str,
    ctx: Context,
    items: BulkInput,
    *,
    category: str | None = None,
    resume: bool = False,
    restart: bool = False,
    clock: Callable[[], datetime] | None = None,
    on_progress: Callable[[BulkState], None] | None = None,
    state_dir: Path | None = None,
) -> BulkState:
    """Import ``items`` from ``source`` in windows of :data:`BULK_WINDOW`, adding residents who are
    not in the vault yet; invalid BSNs are skipped (never sent), persons the source cannot deliver
    are audited and reported, and a source outage stops the run (audited once) for a later resume.

    The cursor file (``<data dir>/imports/<tenant>-<source>.json``) is written after every person,
    so a resume re-imports nobody, except, after a crash, the one person whose record had been
    committed but not yet counted. Ctrl-C ends the run the same way (``stopped: interrupted``).
    The file is removed when the run completes. ``clock`` gives each audited act its own time
    (default: ``ctx.now``). Raises :class:`BulkStateError` when the cursor file does not allow the
    run, and the errors of an unknown tenant or source before anything is sent.
    """
    directory = state_dir if state_dir is not None else services.settings.data_dir / "imports"
    with services.db.read_session() as session:
        t = services.vault.tenant(session, tenant)
        registry = services.connectors.for_tenant(services.vault, session, t)
    connector = registry.get(t.slug, source)
    category = _category(connector, category)
    path = state_path(directory, t.slug, source)
    stamp = (clock() if clock is not None else ctx.now).isoformat()
    fresh = BulkState(
        tenant=t.slug,
        source=source,
        category=category,
        input=items.kind,
        fingerprint=_fingerprint(services, t, items.bsns),
        total=len(items.bsns),
        started_at=stamp,
        updated_at=stamp,
    )
    run = _BulkRun(
        services,
        t,
        ctx,
        items,
        _begin(path, fresh, resume=resume, restart=restart),
        path,
        clock=clock,
        on_progress=on_progress,
    )
    return run.go(connector)


class _BulkRun:
    """The callbacks of one bulk run: store or audit each person, keep the cursor file current."""

    def __init__(
        self,
        services: Services,
        tenant: Tenant,
        ctx: Context,
        items: BulkInput,
        state: BulkState,
        path: Path,
        *,
        clock: Callable[[], datetime] | None,
        on_progress: Callable[[BulkState], None] | None,
    ) -> None:
        self.services = services
        self.tenant = tenant
        self.ctx = ctx
        self.items = items
        self.state = state
        self.path = path
        self.clock = clock
        self.on_progress = on_progress
        self.positions = {bsn: i for i, bsn in enumerate(items.bsns)}

    def go(self, connector: SourceConnector) -> BulkState:
        state = self.state
        _save_state(self.path, state)
        try:
            result = bulk_import(
                connector,
                self.items.bsns,
                category=state.category,
                on_record=self.on_record,
                on_failure=self.on_failure,
                on_progress=self.on_window,
                on_checkpoint=self.advance,
                start_at=state.cursor,
                batch_size=BULK_WINDOW,
            )
        except KeyboardInterrupt:
            # Ctrl-C: every person handled so far is counted in the cursor file; report and stop.
            state.stopped = "interrupted"
            _save_state(self.path, state)
            return state
        if result.aborted is not None:
            error = result.aborted
            record_failure(
                self.services,
                self.at(),
                self.tenant.id,
                error.reason,
                source=state.source,
                category=state.category,
                details={**error_details(error), "bulk": True, "stopped_at": state.cursor},
            )
            state.stopped = error.reason
            _save_state(self.path, state)
        else:
            self.advance(result.cursor)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        return state

    def at(self) -> Context:
        return dataclasses.replace(self.ctx, now=self.clock()) if self.clock is not None else self.ctx

    def advance(self, cursor: int) -> None:
        state, bsns = self.state, self.items.bsns
        state.skipped.extend(p for p in range(state.cursor, cursor) if not is_valid_bsn(bsns[p]))
        state.cursor = max(state.cursor, cursor)
        state.updated_at = self.at().now.isoformat()
        _save_state(self.path, state)

    def fail(self, position: int, reason: str) -> None:
        self.state.failed.setdefault(reason, []).append(position)
        self.advance(position + 1)

    def on_record(self, bsn: str, record: FetchedRecord) -> None:
        position = self.positions[bsn]
        try:
            stored = _store(
                self.services,
                self.at(),
                self.tenant,
                record,
                bsn=bsn,
                resident=self.items.residents.get(bsn),
                extra={"bulk": True},
            )
        except InvalidAnswerError as exc:
            self.fail(position, exc.reason)
            return
        except ResidentErasedError:
            self.fail(position, "resident_erased")
            return
        self.state.imported += 1
        self.state.created += int(stored.created)
        self.advance(position + 1)

    def on_failure(self, bsn: str, error: ConnectorError) -> None:
        resident = self.items.residents.get(bsn)
        if resident is None:
            with self.services.db.read_session() as session, contextlib.suppress(ResidentNotFoundError):
                resident = self.services.vault.resident_by_bsn(session, self.tenant.id, bsn)
        record_failure(
            self.services,
            self.at(),
            self.tenant.id,
            error.reason,
            source=self.state.source,
            category=self.state.category,
            resident=resident,
            details={**error_details(error), "bulk": True},
        )
        self.fail(self.positions[bsn], error.reason)

    def on_window(self, _progress: BulkProgress) -> None:
        if self.on_progress is not None:
            self.on_progress(self.state)
