"""``kluis audit``: verify a tenant's log, export it for offline verification, sign checkpoints.

Verification exits 1 naming the first damage (kind and sequence number); anything else that goes
wrong is one line on stderr, never a traceback (see ``kluis.cli.main``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from sqlmodel import Session

from audit import services as audit_log
from audit import tags
from audit.checkpoints import CheckpointVerifier
from audit.errors import AuditError, CheckpointRefusedError, ExportFormatError, LogStateError
from audit.export import verify_export, write_export
from audit.schemas import AuditEvent, Checkpoint, b64
from audit.verify import VerifyResult, verify_log
from kluis.cli._common import JsonOpt, emit, fail, operator_context, services
from kluis.wiring import Services, sign_checkpoint_audited, utcnow

app = typer.Typer(
    help="The audit log: verify it, export it for offline verification, sign checkpoints.",
    no_args_is_help=True,
)

#: The ``trigger`` detail of the ``audit:checkpoint:signed`` entry of a checkpoint signed here.
TRIGGER = "command"

OptionalTenantOpt = Annotated[
    str | None, typer.Option("--tenant", "-t", help="The municipality's slug.", show_default=False)
]
KeysOpt = Annotated[
    Path | None,
    typer.Option(
        "--keys",
        help="Pinned checkpoint keys (a JWKS file, e.g. from 'kluis audit keys'). Without it the keys"
        " are read from the database itself, which a database administrator could replace.",
        exists=True,
        dir_okay=False,
    ),
]
WitnessOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--witness",
        help="A checkpoint kept outside the database (a file with its JWS or its JSON). Repeatable.",
        exists=True,
        dir_okay=False,
    ),
]


def _pinned(built: Services | None, session: Session | None, keys: Path | None) -> CheckpointVerifier:
    try:
        if keys is not None:
            return CheckpointVerifier(json.loads(keys.read_text()))
        assert built is not None and session is not None
        return CheckpointVerifier(built.signing.public_jwks(session, "checkpoint"))
    except (ValueError, OSError):
        fail("no usable Ed25519 checkpoint keys to verify with (see --keys)")


def _witnessed(paths: list[Path] | None) -> list[str]:
    """Checkpoint JWSs from files holding either the compact JWS or a checkpoint JSON document."""
    tokens = []
    for path in paths or []:
        text = path.read_text().strip()
        if text.startswith("{"):
            try:
                text = str(json.loads(text)["jws"])
            except (ValueError, KeyError, TypeError):
                fail(f"{path.name} is not a checkpoint")
        tokens.append(text)
    return tokens


@contextmanager
def _snapshot(built: Services) -> Iterator[Session]:
    """A read transaction that sees one state of the log (REPEATABLE READ on PostgreSQL; a SQLite
    read transaction is a snapshot already)."""
    with built.db.read_session() as session:
        if not built.db.is_sqlite:
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        yield session


def _record(built: Services, tenant_id: str, name: str, details: dict[str, str | int | bool | None]) -> None:
    """Audit the operator's own act in the log it concerns (and commit it)."""
    ctx = operator_context()
    event = AuditEvent(
        tenant=tenant_id,
        name=name,
        actor=ctx.actor,
        trace=ctx.trace,
        start_time=ctx.now,
        end_time=utcnow(),
        details=details,
    )
    with built.db.session() as session:
        audit_log.append(session, event)
        session.commit()


def _report(as_json: bool, label: str, result: VerifyResult) -> None:
    if result.damage is not None:
        if as_json:
            emit(True, result.to_json())
            raise typer.Exit(1)
        fail(f"audit log of {label} is damaged: {result.damage.describe()}")
    latest = "none" if result.latest_checkpoint is None else f"latest at tree size {result.latest_checkpoint}"
    walked = f" (from the signed checkpoint at {result.since})" if result.since else ""
    text = (
        f"audit log of {label} verified{walked}: {result.entries} entries, root {b64(result.root_hash)}, "
        f"{result.checkpoints} checkpoints ({latest})"
    )
    emit(as_json, result.to_json(), text)


@app.command()
def verify(
    tenant: OptionalTenantOpt = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Verify an exported log offline instead (needs --keys).", dir_okay=False),
    ] = None,
    keys: KeysOpt = None,
    witness: WitnessOpt = None,
    since: Annotated[
        int,
        typer.Option(
            "--since",
            min=0,
            help="Check only what was added after the largest signed checkpoint at or below this "
            "tree size (its signature, and its stored tree against its signed root, are checked); "
            "0: the whole log. A change before that checkpoint needs a full run.",
        ),
    ] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Recompute every leaf and node, check density, checkpoints and signatures. Exits 1 naming the
    first damaged sequence number and the kind of damage."""
    witnessed = _witnessed(witness)
    if file is not None:
        if since:
            fail("--since checks the database's log from a stored checkpoint; a file is verified whole")
        if keys is None:
            fail("offline verification needs the pinned keys: --keys FILE")
        try:
            with file.open(encoding="utf-8") as lines:
                result = verify_export(lines, _pinned(None, None, keys), witnessed=witnessed)
        except (OSError, UnicodeDecodeError, ExportFormatError):
            fail(f"{file.name} is not an exported audit log")
        _report(as_json, result.origin, result)
        return
    if tenant is None:
        fail("name the municipality (--tenant) or an exported file (--file)")
    with services() as built:
        with _snapshot(built) as session:
            tenant_id = built.vault.tenant(session, tenant).id
            pinned = _pinned(built, session, keys)
            result = verify_log(session, tenant_id, pinned, witnessed=witnessed, since=since)
        details: dict[str, str | int | bool | None] = {
            "ok": result.ok,
            "entries": result.entries,
            "since": result.since,
        }
        try:
            _record(built, tenant_id, tags.LOG_VERIFIED, details)
        except AuditError:
            sys.stderr.write("kluis: warning: the verification itself could not be audited\n")
        _report(as_json, tenant, result)


@app.command()
def export(
    tenant: Annotated[
        str, typer.Option("--tenant", "-t", help="The municipality's slug.", show_default=False)
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File to write (default: standard output).", dir_okay=False),
    ] = None,
) -> None:
    """Write the log as JSON lines (header, checkpoints, entries) for 'kluis audit verify --file'."""
    with services() as built:
        with built.db.read_session() as session:
            tenant_id = built.vault.tenant(session, tenant).id
        # The export is recorded (and committed) before any of the log leaves.
        _record(built, tenant_id, tags.LOG_EXPORTED, {"format": "jsonl"})
        with _snapshot(built) as session:
            if output is None:
                size = write_export(session, tenant_id, sys.stdout)
            else:
                with output.open("w", encoding="utf-8") as out:
                    size = write_export(session, tenant_id, out)
                sys.stderr.write(f"exported {size} entries of {tenant} to {output}\n")


@app.command()
def checkpoint(tenant: OptionalTenantOpt = None, as_json: JsonOpt = False) -> None:
    """Sign a checkpoint now: of one municipality's log, or of every log that grew since its last.
    Each new checkpoint is an audit entry that the checkpoint covers."""
    # One set of services, one key provider (a PKCS#11 token can be opened once per process). Every
    # new checkpoint is an ``audit:checkpoint:signed`` entry (trigger ``command``) that it covers; a
    # log with nothing new gets no entry and no signature. One municipality: its latest checkpoint,
    # new or not. Every log: the new ones; a refused log is named (exit 1) after the others are signed.
    with services() as built:
        if tenant is not None:
            with built.db.read_session() as session:
                tenant_id = built.vault.tenant(session, tenant).id
            latest, _ = sign_checkpoint_audited(built, tenant_id, utcnow(), trigger=TRIGGER)
            emit(as_json, latest.to_json(), _line(latest))
            return
        with built.db.read_session() as session:
            pending = audit_log.pending_checkpoints(session)
        signed: list[Checkpoint] = []
        refused: list[str] = []
        for tenant_id in pending:
            try:
                latest, new = sign_checkpoint_audited(built, tenant_id, utcnow(), trigger=TRIGGER)
            except (CheckpointRefusedError, LogStateError):
                with built.db.read_session() as session:
                    refused.append(audit_log.log_head(session, tenant_id).origin)
                continue
            if new:
                signed.append(latest)
    text = "\n".join(_line(c) for c in signed)
    emit(as_json, [c.to_json() for c in signed], text or "no log grew since its last checkpoint")
    if refused:
        fail(
            f"refused to sign a checkpoint of {', '.join(refused)}: the log is no consistent extension"
            " of its latest checkpoint (see 'kluis audit verify')"
        )


def _line(signed: Checkpoint) -> str:
    return f"{signed.origin}\ttree size {signed.tree_size}\troot {b64(signed.root_hash)}"


@app.command()
def keys(as_json: JsonOpt = False) -> None:
    """Print the public checkpoint keys (JWKS, retired keys included): give them to whoever keeps
    checkpoints or verifies exports, so they can pin them."""
    with services() as built, built.db.read_session() as session:
        jwks = built.signing.public_jwks(session, "checkpoint")
    emit(as_json, jwks, json.dumps(jwks, indent=2))
