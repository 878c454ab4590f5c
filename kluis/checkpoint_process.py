"""The periodic checkpoint signer, in a process of its own.

Signing a checkpoint is ~17 statements through SQLAlchemy and a signature: ~13-20 ms of CPU, every
few seconds. In a thread of the server it held the GIL for that long while every request on the
event loop waited: it was the p99 of the data API (measured: 29 against 20 ms at concurrency 16
with the signer off; docs/performance.md). Here it runs in a helper process with services of its
own, built once from the server's settings (the same database, keys and signing keys), and hands
back only the outcomes for ``/metrics``.
"""

from __future__ import annotations

from kluis.settings import Settings
from kluis.wiring import Services, build_services, sign_pending

Checks = dict[tuple[str, str], tuple[bool, float]]  # (tenant, check) -> (ok, when), as Metrics keeps them

_services: Services | None = None


def sign_pending_here(settings: Settings) -> Checks:
    """``sign_pending`` in this process; the integrity-check outcomes it recorded."""
    global _services  # noqa: PLW0603 - one set of services for the life of this helper process
    if _services is None:
        _services = build_services(settings)
    before = _services.metrics.checks()
    sign_pending(_services)
    after = _services.metrics.checks()
    return {key: outcome for key, outcome in after.items() if before.get(key) != outcome}
