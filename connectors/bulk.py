"""Import many residents from one source: skip invalid BSNs, report failures, resume after a stop.

The connector fetches and validates; ``on_record`` (the shell) stores and audits each record, and
``on_failure`` audits each person the source could not deliver. Input is handled in windows (a
BRP request carries up to 20 BSNs); after each window ``on_checkpoint`` receives the cursor, the
number of input items fully handled, which ``start_at`` accepts to resume. If ``on_record``
raises, the run stops there and the window is handled again on resume.

A systemic error (source unavailable or circuit open, credentials refused, request rejected)
stops the run: going on would only fail every remaining person. The result says why and where.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sized
from itertools import islice

from connectors.errors import (
    ConnectorError,
    InvalidAnswerError,
    InvalidBsnError,
    PersonNotFoundError,
)
from connectors.interfaces import BatchSourceConnector, SourceConnector
from connectors.schemas import BulkProgress, BulkResult, FailedImport, FetchedRecord, SkippedBsn
from vault.bsn import is_valid_bsn

logger = logging.getLogger(__name__)

#: Errors about one person; anything else is about the source and stops the run.
PER_PERSON_ERRORS: tuple[type[ConnectorError], ...] = (
    PersonNotFoundError,
    InvalidAnswerError,
    InvalidBsnError,
)


def import_all(
    connector: SourceConnector,
    bsns: Iterable[str],
    *,
    category: str,
    on_record: Callable[[str, FetchedRecord], None],
    on_failure: Callable[[str, ConnectorError], None] | None = None,
    on_progress: Callable[[BulkProgress], None] | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
    start_at: int = 0,
    batch_size: int = 20,
) -> BulkResult:
    """Fetch ``category`` for every BSN in ``bsns`` (from position ``start_at``)."""
    if start_at < 0 or batch_size < 1:
        raise ValueError("start_at must be >= 0 and batch_size >= 1")
    total = len(bsns) if isinstance(bsns, Sized) else None
    # Without batch support, one person per window keeps the cursor exact.
    window_size = batch_size if isinstance(connector, BatchSourceConnector) else 1
    items = islice(enumerate(bsns), start_at, None)
    imported = 0
    skipped: list[SkippedBsn] = []
    failed: list[FailedImport] = []
    cursor = start_at
    aborted: ConnectorError | None = None

    for window in _windows(items, window_size):
        valid = [(pos, bsn) for pos, bsn in window if is_valid_bsn(bsn)]
        try:
            outcomes = _fetch(connector, [bsn for _, bsn in valid], category)
        except ConnectorError as exc:
            aborted = exc
            break
        for pos, bsn in valid:
            outcome = outcomes[bsn]
            if isinstance(outcome, ConnectorError):
                if not isinstance(outcome, PER_PERSON_ERRORS):
                    aborted = outcome
                    break
                failed.append(FailedImport(pos, bsn, outcome))
                if on_failure is not None:
                    on_failure(bsn, outcome)
            else:
                on_record(bsn, outcome)
                imported += 1
        if aborted is not None:
            break
        skipped.extend(SkippedBsn(pos, bsn) for pos, bsn in window if not is_valid_bsn(bsn))
        cursor = window[-1][0] + 1
        if on_checkpoint is not None:
            on_checkpoint(cursor)
        if on_progress is not None:
            on_progress(BulkProgress(cursor, total, imported, len(skipped), len(failed)))

    logger.info(
        "bulk import of %s: %d imported, %d skipped (invalid BSN), %d failed%s",
        category,
        imported,
        len(skipped),
        len(failed),
        f", stopped: {aborted.reason}" if aborted is not None else "",
    )
    return BulkResult(imported, tuple(skipped), tuple(failed), cursor, aborted)


def _windows(items: Iterator[tuple[int, str]], size: int) -> Iterator[list[tuple[int, str]]]:
    while window := list(islice(items, size)):
        yield window


def _fetch(
    connector: SourceConnector, bsns: list[str], category: str
) -> dict[str, FetchedRecord | ConnectorError]:
    if not bsns:
        return {}
    if isinstance(connector, BatchSourceConnector):
        return connector.fetch_many(bsns, category)
    outcomes: dict[str, FetchedRecord | ConnectorError] = {}
    for bsn in bsns:
        try:
            outcomes[bsn] = connector.fetch(bsn, category)
        except PER_PERSON_ERRORS as exc:
            outcomes[bsn] = exc
    return outcomes
