"""Operator commands: init, tenants, departments, residents, records, keys, serve, demo."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from kluis.cli._common import BsnOpt, JsonOpt, TenantOpt, emit, fail, operator_context, services
from kluis.settings import Settings
from kluis.web.mandates import end_mandates_of
from kluis.wiring import initialise

tenant_app = typer.Typer(help="Municipalities (tenants).", no_args_is_help=True)
department_app = typer.Typer(help="Departments of a municipality.", no_args_is_help=True)
resident_app = typer.Typer(help="Residents: add and erase (crypto-shredding).", no_args_is_help=True)
record_app = typer.Typer(help="Records in a resident's vault.", no_args_is_help=True)
keys_app = typer.Typer(help="Key-encryption keys and signing keys.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.add_typer(tenant_app, name="tenant")
    app.add_typer(department_app, name="department")
    app.add_typer(resident_app, name="resident")
    app.add_typer(record_app, name="record")
    app.add_typer(keys_app, name="keys")
    app.command("serve")(serve)
    app.command("purge-expired")(purge_expired)
    app.command("demo")(demo)


def init(as_json: JsonOpt = False) -> None:
    """Create the data directory, the key file (0600) and the database schema. Safe to run twice."""
    with services() as svc:
        initialise(svc)
        where = "PostgreSQL" if not svc.db.is_sqlite else str(svc.settings.data_dir)
        emit(as_json, {"status": "ok", "database": svc.db.dialect}, f"kluis initialised ({where})")


def purge_expired(as_json: JsonOpt = False) -> None:
    """Delete expired portal sessions, used client assertions and DPoP proofs, and revoked tokens;
    end the grants whose department never fetched their token in time (audited).

    Every running node does this once an hour (KLUIS_HOUSEKEEPING_INTERVAL_SECONDS); this command is
    for cron, or for nodes where that is switched off. Safe to run at any time, on any node.
    """
    from kluis.housekeeping import housekeep
    from kluis.wiring import utcnow

    with services() as svc:
        purged = housekeep(svc, utcnow())
    counts = purged.deleted()
    emit(
        as_json,
        {"status": "ok", "purged": counts, "ended": {"unfetched_grants": purged.unfetched_grants_ended}},
        "deleted: "
        + ", ".join(f"{count} {table.replace('_', ' ')}" for table, count in counts.items())
        + f"; ended {purged.unfetched_grants_ended} unfetched grants",
    )


@tenant_app.command("create")
def tenant_create(
    slug: Annotated[str, typer.Argument(help="Short name, e.g. gemeente-utrecht.")],
    name: Annotated[str, typer.Option("--name", help="Display name, e.g. 'Gemeente Utrecht'.")],
    as_json: JsonOpt = False,
) -> None:
    """Create a municipality with its own keys, categories and audit log."""
    with services() as svc, svc.db.session() as session:
        tenant = svc.vault.create_tenant(session, operator_context(), slug, name)
        emit(as_json, {"tenant_id": tenant.id, "slug": tenant.slug}, f"created municipality {tenant.slug}")


@tenant_app.command("list")
def tenant_list(as_json: JsonOpt = False) -> None:
    """List the municipalities."""
    with services() as svc, svc.db.read_session() as session:
        rows = [{"slug": t.slug, "name": t.name, "tenant_id": t.id} for t in svc.vault.tenants(session)]
        emit(as_json, rows, "\n".join(f"{r['slug']}\t{r['name']}" for r in rows) or "(none)")


@department_app.command("create")
def department_create(
    tenant: TenantOpt,
    code: Annotated[str, typer.Argument(help="Department code, e.g. jeugdzorg, inkomen, wmo.")],
    name: Annotated[str, typer.Option("--name", help="Display name.")],
    as_json: JsonOpt = False,
) -> None:
    """Create a department of a municipality."""
    with services() as svc, svc.db.session() as session:
        t = svc.vault.tenant(session, tenant)
        department = svc.departments.create(session, operator_context(), t, code, name)
        emit(
            as_json,
            {"department_id": department.id, "code": department.code},
            f"created department {department.code}",
        )


@department_app.command("list")
def department_list(tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """List the departments of a municipality."""
    with services() as svc, svc.db.read_session() as session:
        t = svc.vault.tenant(session, tenant)
        rows = [{"code": d.code, "name": d.name} for d in svc.departments.list(session, t.id)]
        emit(as_json, rows, "\n".join(f"{r['code']}\t{r['name']}" for r in rows) or "(none)")


@resident_app.command("add")
def resident_add(tenant: TenantOpt, bsn: BsnOpt, as_json: JsonOpt = False) -> None:
    """Add a resident (the BSN must pass the 11-proef). Prints the opaque resident id."""
    with services() as svc, svc.db.session() as session:
        t = svc.vault.tenant(session, tenant)
        resident = svc.vault.add_resident(session, operator_context(), t, bsn)
        emit(as_json, {"resident_id": resident.id}, f"added resident {resident.id}")


@resident_app.command("erase")
def resident_erase(
    tenant: TenantOpt,
    bsn: BsnOpt,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Erase a resident's vault for good (GDPR art. 17): destroys the data key. Cannot be undone."""
    if not yes and not typer.confirm("This destroys the resident's data for good. Continue?"):
        fail("not erased")
    with services() as svc, svc.db.session() as session:
        t = svc.vault.tenant(session, tenant)
        resident = svc.vault.resident_by_bsn(session, t.id, bsn)
        ctx = operator_context()
        end_mandates_of(session, svc.vault, ctx, resident)  # committed with the erasure, or not at all
        svc.vault.erase_resident(session, ctx, resident)
        emit(as_json, {"resident_id": resident.id, "erased": True}, f"erased resident {resident.id}")


def _read_json_file(path: Path) -> Any:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError:
        fail(f"cannot read {path}")
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno})")


@record_app.command("put")
def record_put(
    tenant: TenantOpt,
    bsn: BsnOpt,
    category: Annotated[str, typer.Option("--category", help="Category code, e.g. inkomen.")],
    file: Annotated[Path, typer.Option("--file", help="JSON document ('-' for standard input).")],
    source: Annotated[str, typer.Option("--source", help="Where the data comes from.")] = "operator",
    as_json: JsonOpt = False,
) -> None:
    """Store a new version of a resident's record, validated against the category's schema."""
    data = _read_json_file(file)
    with services() as svc, svc.db.session() as session:
        t = svc.vault.tenant(session, tenant)
        resident = svc.vault.resident_by_bsn(session, t.id, bsn)
        summary = svc.vault.put_record(session, operator_context(), resident, category, data, source=source)
        emit(
            as_json,
            {"category": summary.category, "version": summary.version},
            f"stored {summary.category} version {summary.version}",
        )


@record_app.command("get")
def record_get(
    tenant: TenantOpt,
    bsn: BsnOpt,
    category: Annotated[str, typer.Option("--category", help="Category code.")],
    version: Annotated[int | None, typer.Option("--version", help="A past version.")] = None,
) -> None:
    """Print a record (decrypted; the read is audited)."""
    with services() as svc, svc.db.session() as session:
        t = svc.vault.tenant(session, tenant)
        resident = svc.vault.resident_by_bsn(session, t.id, bsn)
        content = svc.vault.get_record(session, operator_context(), resident, category, version)
        emit(True, content.public())


@record_app.command("list")
def record_list(tenant: TenantOpt, bsn: BsnOpt, as_json: JsonOpt = False) -> None:
    """List a resident's categories with version and time (no content)."""
    with services() as svc, svc.db.read_session() as session:
        t = svc.vault.tenant(session, tenant)
        resident = svc.vault.resident_by_bsn(session, t.id, bsn)
        rows = [
            {
                "category": s.category,
                "version": s.version,
                "updated_at": s.updated_at.isoformat(),
                "source": s.source,
            }
            for s in svc.vault.summaries(session, resident)
        ]
        emit(
            as_json,
            rows,
            "\n".join(f"{r['category']}\tv{r['version']}\t{r['updated_at']}" for r in rows) or "(none)",
        )


@keys_app.command("rotate")
def keys_rotate(
    tenant: TenantOpt,
    destroy_old: Annotated[
        bool,
        typer.Option(
            "--destroy-old",
            help="Destroy retired KEK versions afterwards (older database backups then"
            " cannot be opened any more).",
        ),
    ] = False,
    batch: Annotated[int, typer.Option(help="Data keys rewrapped per transaction.")] = 500,
    as_json: JsonOpt = False,
) -> None:
    """Create a new KEK version and rewrap every data key (records are not decrypted; no downtime)."""
    with services() as svc, svc.db.session() as session:
        t = svc.vault.tenant(session, tenant)
        ctx = operator_context()
        version = svc.vault.begin_rotation(session, t, ctx.now)
        total = 0
        while (n := svc.vault.rewrap_batch(session, t.id, version, batch)) > 0:
            total += n
            if not as_json:
                sys.stderr.write(f"\rrewrapped {total} data keys")
        if not as_json and total:
            sys.stderr.write("\n")
        retired = svc.vault.finish_rotation(session, ctx, t, version, destroy_old=destroy_old)
        emit(
            as_json,
            {"kek_version": version, "rewrapped": total, "retired": retired, "destroyed": destroy_old},
            f"KEK version {version} is current; rewrapped {total} data keys; retired {retired or 'none'}",
        )


def _exit_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    # Stopping already: a repeated SIGTERM while the interpreter exits must not kill the process.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(0)


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Serve the API, the resident portal and the privacy-officer console (uvicorn)."""
    import uvicorn

    from kluis.doctor import all_problems

    with services() as svc:
        problems = all_problems(svc) if svc.settings.is_production else []
    if problems:
        fail("refusing to start in production: " + "; ".join(problems))
    from kluis.observability import configure_logging

    configure_logging("INFO")  # JSON lines with request and trace ids, never personal data
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal to the handler it found:
    # with the default one the process dies of the signal (exit -15) after an orderly stop. This
    # handler turns that (and a SIGTERM before uvicorn listens) into a clean exit with status 0.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    uvicorn.run(
        "kluis.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        log_config=None,  # keep our JSON formatter instead of uvicorn's own
        access_log=False,  # access logs would carry paths; requests are counted in /metrics instead
        proxy_headers=True,
        timeout_graceful_shutdown=20,
    )


def _progress(message: str) -> None:
    sys.stderr.write(message + "\n")


def demo(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    residents: Annotated[int, typer.Option(help="How many fictitious BRP persons to load.")] = 50,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Only set up the demo data.")] = False,
) -> None:
    """Set up a demo municipality with departments, purposes, residents and records, then serve."""
    from kluis.demo.setup import build_demo

    settings = Settings()
    if settings.is_production:
        fail("the demo is refused in production")
    with services() as svc:
        initialise(svc)
        summary = build_demo(svc, residents=residents, progress=_progress)
    sys.stderr.write(summary + "\n")
    if not no_serve:
        sys.stderr.write(f"Kluis demo on http://{host}:{port}/  (Ctrl-C stops it)\n")
        serve(host=host, port=port, workers=1)
