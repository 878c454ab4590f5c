"""``kluis import``: pull residents' records from a configured source registry into the vault.

    kluis import --tenant T --source brp --bsn BSN [--create]
    kluis import --tenant T --source brp --all                [--resume | --restart]
    kluis import --tenant T --source brp --bsn-file FILE      [--resume | --restart]

A BSN is never printed: a single import names the resident's opaque id, a bulk run names line
numbers of the file (``--bsn-file``) or resident ids (``--all``). Exit status: 0 when every item
was imported or skipped as an invalid BSN, 1 when a person could not be imported, 75 when the run
stopped early (source down, interrupted) and can be continued with ``--resume``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from kluis.cli._common import JsonOpt, TenantOpt, emit, fail, operator_context, services
from kluis.imports import BulkInput, BulkState, BulkStateError, import_all, import_one, parse_bsn_lines
from kluis.wiring import utcnow

#: ``EX_TEMPFAIL`` (sysexits.h): try again later, here with ``--resume``.
EXIT_RESUMABLE = 75
#: How many positions a text summary lists per kind; ``--json`` lists them all.
TEXT_LIST_LIMIT = 20


def register(app: typer.Typer) -> None:
    app.command("import")(import_command)


def import_command(
    tenant: TenantOpt,
    source: Annotated[
        str, typer.Option("--source", "-s", help="The configured source, e.g. brp.", show_default=False)
    ],
    bsn: Annotated[
        str | None,
        typer.Option("--bsn", help="One resident's BSN (never printed or logged).", show_default=False),
    ] = None,
    all_residents: Annotated[
        bool, typer.Option("--all", help="Every resident of the municipality in the vault.")
    ] = False,
    bsn_file: Annotated[
        Path | None,
        typer.Option(
            "--bsn-file",
            help="A file with one BSN per line ('-' for standard input); residents not in the vault"
            " are added, invalid BSNs are reported by line number and skipped.",
            show_default=False,
        ),
    ] = None,
    create: Annotated[
        bool,
        typer.Option(
            "--create",
            help="With --bsn: add the resident if they are not in the vault yet (only once the"
            " source delivered their record).",
        ),
    ] = False,
    category: Annotated[
        str | None,
        typer.Option(
            "--category", help="The category, when the source delivers several.", show_default=False
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the interrupted bulk run of this source.")
    ] = False,
    restart: Annotated[
        bool, typer.Option("--restart", help="Start a bulk run over, dropping an interrupted one.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Import records from a source registry (e.g. the BRP) into residents' vaults; every import is
    audited."""
    modes = sum((bsn is not None, all_residents, bsn_file is not None))
    if modes != 1:
        fail("give exactly one of --bsn, --all and --bsn-file")
    if create and bsn is None:
        fail("--create goes with --bsn (a bulk run from --bsn-file always adds missing residents)")
    if bsn is not None and (resume or restart):
        fail("--resume and --restart go with a bulk run (--all or --bsn-file)")
    if resume and restart:
        fail("give one of --resume and --restart")
    if bsn is not None:
        _single(tenant, source, bsn, create=create, category=category, as_json=as_json)
        return
    items = _read_bsn_file(bsn_file) if bsn_file is not None else None
    code = _bulk(tenant, source, items, category=category, resume=resume, restart=restart, as_json=as_json)
    if code:
        raise typer.Exit(code)


def _single(tenant: str, source: str, bsn: str, *, create: bool, category: str | None, as_json: bool) -> None:
    with services() as svc:
        imported = import_one(
            svc, tenant, bsn, source, operator_context(), create_resident=create, category=category
        )
    summary = imported.summary
    emit(
        as_json,
        {
            "resident_id": imported.resident_id,
            "created": imported.created,
            "category": summary.category,
            "version": summary.version,
            "source": summary.source,
        },
        f"imported {summary.category} version {summary.version} from {summary.source}"
        f" for resident {imported.resident_id}" + (" (added to the vault)" if imported.created else ""),
    )


def _read_bsn_file(path: Path) -> BulkInput:
    try:
        if str(path) == "-":
            return parse_bsn_lines(sys.stdin.read().splitlines())
        with path.open(encoding="utf-8-sig") as fh:
            return parse_bsn_lines(fh.read().splitlines())
    except OSError:
        fail(f"cannot read {path}")
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text")


def _bulk(
    tenant: str,
    source: str,
    items: BulkInput | None,
    *,
    category: str | None,
    resume: bool,
    restart: bool,
    as_json: bool,
) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from kluis.imports import vault_residents

    started = time.monotonic()
    with services() as svc:
        if items is None:
            items = vault_residents(svc, tenant)
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=as_json,
        )
        task = progress.add_task(f"importing from {source}", total=len(items.bsns), counts="")

        def show(state: BulkState) -> None:
            counts = f"{state.imported} imported, {len(state.skipped)} skipped, {state.failed_count} failed"
            progress.update(task, completed=state.cursor, counts=counts)

        try:
            with progress:
                state = import_all(
                    svc,
                    tenant,
                    source,
                    operator_context(),
                    items,
                    category=category,
                    resume=resume,
                    restart=restart,
                    clock=utcnow,
                    on_progress=show,
                )
        except BulkStateError as exc:
            fail(str(exc))
    report = _report(state, items, seconds=time.monotonic() - started)
    emit(as_json, report, _text(report))
    if state.stopped is not None:
        return EXIT_RESUMABLE
    return 1 if state.failed else 0


def _report(state: BulkState, items: BulkInput, *, seconds: float) -> dict[str, Any]:
    """The summary: counts and where (line numbers or resident ids), never a BSN."""
    key = "lines" if items.kind == "bsn-file" else "residents"

    def where(positions: list[int]) -> dict[str, Any]:
        return {"count": len(positions), key: [items.labels[p] for p in positions]}

    def label(position: int | None) -> int | str | None:
        return items.labels[position] if position is not None and position < len(items.labels) else None

    report: dict[str, Any] = {
        "tenant": state.tenant,
        "source": state.source,
        "category": state.category,
        "input": state.input,
        "total": state.total,
        "processed": state.cursor,
        "completed": state.completed,
        "resumed_from": label(state.resumed_from),
        "imported": state.imported,
        "residents_added": state.created,
        "skipped_invalid": where(state.skipped),
        "failed": {reason: where(positions) for reason, positions in sorted(state.failed.items())},
        "stopped": None,
        "seconds": round(seconds, 1),
    }
    if items.kind == "bsn-file":
        report["duplicates"] = {"count": len(items.duplicates), "lines": list(items.duplicates)}
    if state.stopped is not None:
        report["stopped"] = {"reason": state.stopped, "at": label(state.cursor)}
    return report


def _listed(entry: dict[str, Any]) -> str:
    values = entry.get("lines", entry.get("residents", []))
    noun = "line" if "lines" in entry else "resident"
    shown = ", ".join(str(v) for v in values[:TEXT_LIST_LIMIT])
    more = f" and {len(values) - TEXT_LIST_LIMIT} more" if len(values) > TEXT_LIST_LIMIT else ""
    return f"{noun}{'s' if len(values) != 1 else ''} {shown}{more}"


def _text(report: dict[str, Any]) -> str:
    lines = [
        f"imported {report['imported']} of {report['total']} ({report['category']} from {report['source']},"
        f" {report['residents_added']} residents added, {report['seconds']} s)"
    ]
    if report["resumed_from"] is not None:
        noun = "line" if report["input"] == "bsn-file" else "resident"
        lines.append(f"resumed at {noun} {report['resumed_from']}")
    skipped = report["skipped_invalid"]
    if skipped["count"]:
        lines.append(f"skipped {skipped['count']} invalid BSN(s): {_listed(skipped)}")
    duplicates = report.get("duplicates")
    if duplicates and duplicates["count"]:
        lines.append(f"ignored {duplicates['count']} repeated BSN(s): {_listed(duplicates)}")
    for reason, entry in report["failed"].items():
        lines.append(f"failed {entry['count']} ({reason}): {_listed(entry)}")
    stopped = report["stopped"]
    if stopped is not None:
        at = f" at {'line' if report['input'] == 'bsn-file' else 'resident'} {stopped['at']}"
        lines.append(
            f"stopped early ({stopped['reason']}){at if stopped['at'] is not None else ''};"
            " run the same command with --resume to continue"
        )
    return "\n".join(lines)
