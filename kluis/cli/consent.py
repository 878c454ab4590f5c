"""Consent commands: OAuth clients, the purpose register, development tokens, signing-key rotation."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from kluis.cli._common import JsonOpt, TenantOpt, emit, fail, operator_context, services
from kluis.cli.operator import keys_app

client_app = typer.Typer(help="OAuth clients of departments.", no_args_is_help=True)
purpose_app = typer.Typer(help="The processing-activity register (purposes).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(client_app, name="client")
    app.add_typer(purpose_app, name="purpose")
    app.command("dev-token")(dev_token)
    keys_app.command("rotate-signing")(rotate_signing)


def _csv(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


@client_app.command("create")
def client_create(
    tenant: TenantOpt,
    department: Annotated[str, typer.Option("--department", "-d", help="Department code.")],
    jwks: Annotated[
        Path | None, typer.Option("--jwks", help="JSON file with the client's public keys (JWKS).")
    ] = None,
    jwks_url: Annotated[
        str | None, typer.Option("--jwks-url", help="https:// URL where the client publishes its JWKS.")
    ] = None,
    secret: Annotated[
        bool, typer.Option("--secret", help="Authenticate with a client secret (development only).")
    ] = False,
    dpop: Annotated[
        bool, typer.Option("--dpop", help="Require DPoP-bound access tokens (RFC 9449).")
    ] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="Display name (default: the department's).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register an OAuth client of a department (private_key_jwt with --jwks/--jwks-url, or --secret)."""
    document = None
    if jwks is not None:
        try:
            document = json.loads(jwks.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            fail(f"{jwks} is not a readable JSON file")
    with services() as svc, svc.db.session() as session:
        t = svc.vault.tenant(session, tenant)
        client, plain = svc.clients.create(
            session,
            operator_context(),
            t,
            department,
            jwks=document,
            jwks_uri=jwks_url,
            secret=secret,
            dpop=dpop,
            name=name,
        )
        client_id = client.id
    payload = {"client_id": client_id, **({"client_secret": plain} if plain is not None else {})}
    text = f"client_id: {client_id}"
    if plain is not None:
        text += f"\nclient_secret: {plain}\n(the secret is shown only now; keep it safe)"
    emit(as_json, payload, text)


@client_app.command("list")
def client_list(tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """List the clients of a municipality (never their secrets)."""
    with services() as svc, svc.db.read_session() as session:
        t = svc.vault.tenant(session, tenant)
        rows = [
            {
                "client_id": c.id,
                "department": d.code,
                "name": c.name,
                "auth_method": c.auth_method,
                "dpop_bound": c.dpop_bound,
                "disabled": c.disabled_at is not None,
            }
            for c, d in svc.clients.list(session, t.id)
        ]
    emit(
        as_json,
        rows,
        "\n".join(f"{r['client_id']}\t{r['department']}\t{r['auth_method']}" for r in rows) or "(none)",
    )


@purpose_app.command("add")
def purpose_add(
    tenant: TenantOpt,
    code: Annotated[str, typer.Argument(help="Purpose code, e.g. bijstand.")],
    description_nl: Annotated[
        str, typer.Option("--description-nl", help="Plain-language Dutch description.")
    ],
    description_en: Annotated[
        str, typer.Option("--description-en", help="Plain-language English description.")
    ],
    legal_basis: Annotated[
        str,
        typer.Option(
            "--legal-basis",
            help="GDPR art. 6(1): consent, contract, legal_obligation, vital_interests, public_task, "
            "legitimate_interests.",
        ),
    ],
    categories: Annotated[str, typer.Option("--categories", help="Comma-separated category codes.")],
    max_days: Annotated[int, typer.Option("--max-days", help="Longest grant for this purpose, in days.")],
    writable_categories: Annotated[
        str | None,
        typer.Option("--writable-categories", help="Comma-separated categories a grant may allow writing."),
    ] = None,
    statute: Annotated[
        str | None, typer.Option("--statute", help="The statute, for a legal basis other than consent.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a purpose (processing activity) that consent requests can name."""
    with services() as svc, svc.db.session() as session:
        t = svc.vault.tenant(session, tenant)
        purpose = svc.purposes.add(
            session,
            operator_context(),
            t,
            code,
            description_nl=description_nl,
            description_en=description_en,
            legal_basis=legal_basis,
            categories=_csv(categories),
            writable_categories=_csv(writable_categories),
            max_days=max_days,
            statute=statute,
        )
    emit(as_json, {"code": purpose.code, "categories": purpose.categories}, f"added purpose {purpose.code}")


@purpose_app.command("list")
def purpose_list(tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """List the purpose register of a municipality."""
    with services() as svc, svc.db.read_session() as session:
        t = svc.vault.tenant(session, tenant)
        purposes = svc.purposes.list(session, t.id)
        rows = [
            {
                "code": p.code,
                "description_nl": p.description_nl,
                "description_en": p.description_en,
                "legal_basis": p.legal_basis,
                "statute": p.statute,
                "categories": p.categories,
                "writable_categories": p.writable_categories,
                "max_days": p.max_days,
            }
            for p in purposes
        ]
        lines = [
            f"{p.code}\t{p.legal_basis}\t{','.join(p.categories)}\t{p.max_days} days\t{p.description_en}"
            for p in purposes
        ]
    emit(as_json, rows, "\n".join(lines) or "(none)")


def dev_token(
    tenant: TenantOpt,
    bsn: Annotated[
        str | None, typer.Option("--bsn", help="A resident's BSN: a resident token (never printed).")
    ] = None,
    privacy_officer: Annotated[
        bool, typer.Option("--privacy-officer", help="A privacy-officer token of the municipality.")
    ] = False,
    subject: Annotated[
        str, typer.Option("--subject", help="The privacy officer's name or id.")
    ] = "dev-officer",
    minutes: Annotated[int, typer.Option("--minutes", min=1, max=60, help="Lifetime.")] = 15,
) -> None:
    """Print a short-lived development token (last line of output). Refused in production."""
    with services() as svc:
        if svc.settings.is_production:
            fail("development tokens are refused in production (KLUIS_ENV=production)")
        if (bsn is None) == (not privacy_officer):
            fail("give either --bsn or --privacy-officer")
        with svc.db.session() as session:
            t = svc.vault.tenant(session, tenant)
            ctx = operator_context()
            if bsn is not None:
                resident = svc.vault.resident_by_bsn(session, t.id, bsn)
                if resident.erased_at is not None:
                    fail("this resident's vault has been erased")
                token = svc.oauth.issue_user_token(
                    session,
                    ctx,
                    role="resident",
                    tenant_id=t.id,
                    subject=resident.id,
                    lifetime=minutes * 60,
                    resident=resident,
                )
            else:
                if not subject.strip() or len(subject) > 64:
                    fail("the subject is 1 to 64 characters")
                token = svc.oauth.issue_user_token(
                    session,
                    ctx,
                    role="privacy_officer",
                    tenant_id=t.id,
                    subject=subject.strip(),
                    lifetime=minutes * 60,
                )
    sys.stdout.write(token + "\n")


def rotate_signing(as_json: JsonOpt = False) -> None:
    """Rotate the access-token signing key: the new key signs at once, the old one stays valid and
    published for one token lifetime (overlap)."""
    with services() as svc, svc.db.session() as session:
        row = svc.oauth.rotate_signing_key(session, operator_context())
        kid, alg = row.kid, row.alg
    emit(as_json, {"kid": kid, "alg": alg}, f"token signing key {kid} is now active")
