"""Housekeeping: delete the rows whose purpose has passed.

Three tables only ever grow on their own, and none of their rows is of use after its expiry:

- ``portal_session``: a resident's or privacy officer's browser session (it links a random id to a
  resident). Past its absolute or idle expiry it can never be used again (``SessionStore.load``
  refuses it); keeping it would keep a trace of who used the portal when, for no purpose
  (GDPR art. 5(1)(e), storage limitation).
- ``consent_used_assertion``: the ``jti`` of every accepted client assertion and DPoP proof, kept
  to refuse a replay. An expired assertion or proof is refused on its age alone.
- ``consent_revoked_token``: access tokens revoked before their expiry. An expired token is
  refused on its expiry alone.

Each node runs ``housekeep`` every ``KLUIS_HOUSEKEEPING_INTERVAL_SECONDS`` (``kluis.app``);
``kluis purge-expired`` does the same from cron. The deletes are idempotent, so several nodes may run
them at once. They touch no vault and no audit entry (the log is append-only by design).

One more thing ``housekeep`` does that is not a delete: a grant whose department never came back
for its token within the approved request's lifetime can never be used, yet the resident would
see it as active until its end; ``ConsentService.end_unfetched`` revokes such grants, by the system
and audited each (a compare-and-set, so several nodes may run it at once too).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime

from sqlmodel import delete

from consent.models import RevokedToken, UsedAssertion, expired
from kluis.db import Database
from kluis.web.sessions import SessionStore
from kluis.wiring import Services


@dataclass(frozen=True, slots=True)
class Purged:
    """How many rows each table lost (and, not a delete, how many unfetched grants ended)."""

    portal_sessions: int
    used_assertions: int
    revoked_tokens: int
    unfetched_grants_ended: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def deleted(self) -> dict[str, int]:
        """The deletes only, by table (``/metrics``: ``kluis_purged_rows_total``)."""
        return {k: v for k, v in self.as_dict().items() if k != "unfetched_grants_ended"}

    @property
    def total(self) -> int:
        return sum(self.as_dict().values())


def purge_expired(db: Database, sessions: SessionStore, now: datetime) -> Purged:
    """Delete every expired portal session, used assertion and revoked token; one transaction per
    table, so a long delete of one does not hold locks on the others."""
    expired_sessions = sessions.purge_expired(now)
    counts: list[int] = []
    # The rule of the code that deletes these rows on its way (consent.models.expired).
    for model in (UsedAssertion, RevokedToken):
        with db.session() as session:
            result = session.execute(delete(model).where(expired(model, now)))
            session.commit()
            counts.append(int(getattr(result, "rowcount", 0) or 0))
    return Purged(portal_sessions=expired_sessions, used_assertions=counts[0], revoked_tokens=counts[1])


def housekeep(services: Services, now: datetime) -> Purged:
    """``purge_expired`` with the configured session lifetimes, counted on ``/metrics``."""
    purged = purge_expired(services.db, SessionStore.configured(services.db, services.settings), now)
    services.metrics.purged(purged.deleted())
    with services.db.read_session() as reader, services.db.session() as writer:
        ended = services.consent.end_unfetched(reader, writer, now)
    return replace(purged, unfetched_grants_ended=ended)
