"""The operator CLI ``kluis``. Every error is one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import logging
import sys

import typer

from kluis.cli import operator
from kluis.cli._common import CliError


def _error_message(exc: BaseException) -> tuple[str, int] | None:
    from audit.errors import AuditError
    from consent.errors import ConsentError
    from vault.errors import VaultError

    if isinstance(exc, CliError):
        return str(exc), exc.code
    if isinstance(exc, VaultError | ConsentError | AuditError):
        return str(exc), 1
    try:
        from connectors.errors import ConnectorError
    except ImportError:  # pragma: no cover - connectors is optional at this layer
        return None
    if isinstance(exc, ConnectorError):
        return str(exc), 1
    return None


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="kluis",
        help="Kluis: citizen-controlled personal data vault. Operator commands.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    operator.register(app)
    for module_name, name in (("kluis.cli.audit", "audit"),):
        module = __import__(module_name, fromlist=["app"])
        app.add_typer(module.app, name=name)
    for module_name in ("kluis.cli.consent", "kluis.cli.connectors", "kluis.cli.production"):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(app)
    return app


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app = build_app()
    try:
        result = app(standalone_mode=False)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - the CLI's single exit point for errors
        import click

        if isinstance(exc, click.exceptions.Abort):
            sys.stderr.write("kluis: aborted\n")
            sys.exit(1)
        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        known = _error_message(exc)
        if known is None:
            sys.stderr.write(
                f"kluis: error: unexpected {type(exc).__name__} (no details are printed: they"
                " could hold personal data)\n"
            )
            sys.exit(70)
        message, code = known
        sys.stderr.write(f"kluis: error: {message}\n")
        sys.exit(code)
    sys.exit(result if isinstance(result, int) else 0)
