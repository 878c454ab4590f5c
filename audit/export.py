"""A tenant's log as a file anyone can verify offline, with nothing but the pinned checkpoint keys.

JSON lines, in this order::

    {"format": "kluis-audit-log", "version": 1, "tenant_id": …, "origin": …, "tree_size": n,
     "root_hash": …}
    {"type": "checkpoint", "tree_size": …, "root_hash": …, "timestamp": <ms>, "kid": …, "jws": …}
    {"type": "entry", "seq": 0, "leaf_bytes": "<base64>", "leaf_hash": "<base64>"}

one header line, the checkpoints smallest first, then the entries 0 … n-1.

Checkpoints come first so a verifier can check each one when its walk reaches that tree size. The
header is not trusted: only checkpoints signed by a pinned key vouch for anything.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.checkpoints import CheckpointVerifier
from audit.errors import ExportFormatError, UnknownLogError
from audit.models import ENTRY, STATE
from audit.schemas import b64
from audit.verify import Damage, DamageKind, StoredCheckpoint, VerifyResult, Walker, checkpoint_rows

FORMAT = "kluis-audit-log"
VERSION = 1


def write_export(session: Session, tenant_id: str, out: TextIO, *, chunk: int = 4096) -> int:
    """Write the tenant's log to ``out``; return the tree size exported. Raises ``UnknownLogError``.

    The tree size is read first: entries appended meanwhile are simply not part of this export.
    """
    conn = session.connection()
    state = conn.execute(
        select(STATE.c.origin, STATE.c.size, STATE.c.root_hash).where(STATE.c.tenant_id == tenant_id)
    ).first()
    if state is None:
        raise UnknownLogError
    size: int = state.size
    header = {
        "format": FORMAT,
        "version": VERSION,
        "tenant_id": tenant_id,
        "origin": state.origin,
        "tree_size": size,
        "root_hash": b64(state.root_hash),
    }
    out.write(json.dumps(header, sort_keys=True) + "\n")
    for stored in checkpoint_rows(conn, tenant_id, -1, size):
        line = {
            "type": "checkpoint",
            "tree_size": stored.tree_size,
            "root_hash": b64(stored.root_hash),
            "timestamp": stored.timestamp_ms,
            "kid": stored.kid,
            "jws": stored.jws,
        }
        out.write(json.dumps(line, sort_keys=True) + "\n")
    for start in range(0, size, chunk):
        rows = conn.execute(
            select(ENTRY.c.seq, ENTRY.c.leaf_bytes, ENTRY.c.leaf_hash)
            .where(
                ENTRY.c.tenant_id == tenant_id, ENTRY.c.seq >= start, ENTRY.c.seq < min(start + chunk, size)
            )
            .order_by(ENTRY.c.seq)
        )
        for r in rows:
            line = {
                "type": "entry",
                "seq": r.seq,
                "leaf_bytes": b64(r.leaf_bytes),
                "leaf_hash": b64(r.leaf_hash),
            }
            out.write(json.dumps(line, sort_keys=True) + "\n")
    return size


def _unb64(value: object) -> bytes:
    if not isinstance(value, str):
        raise ExportFormatError
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ExportFormatError from exc


def _record(text: str | bytes) -> Mapping[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ExportFormatError from exc
    if not isinstance(value, dict):
        raise ExportFormatError
    return value


def verify_export(
    lines: Iterable[str | bytes], verifier: CheckpointVerifier, *, witnessed: Sequence[str] = ()
) -> VerifyResult:
    """Verify an exported log offline: every leaf in order, the header's root, and every checkpoint
    (exported or ``witnessed``) against the pinned keys. Raises ``ExportFormatError`` if the first
    line is not an export header."""
    stream = iter(lines)
    header = _record(next(stream, "null"))
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ExportFormatError
    tenant_id, origin, size = header.get("tenant_id"), header.get("origin"), header.get("tree_size")
    root = _unb64(header.get("root_hash"))
    if not isinstance(tenant_id, str) or not isinstance(origin, str) or type(size) is not int:
        raise ExportFormatError
    walker = Walker(tenant_id, origin, verifier, witnessed)
    found = walker.findings
    due: dict[int, StoredCheckpoint] = {}
    found.add(-1, walker.reached())  # witnessed checkpoints of the empty tree
    for text in stream:
        if found:
            break
        position = walker.edge.size
        try:
            found.add(position, _line(walker, due, _record(text)))
        except (KeyError, TypeError, ValueError, ExportFormatError):
            found.add(position, Damage("altered", "entry", position, "an unreadable line in the export"))
    count = walker.edge.size
    if not found and size != count:
        found.add(count, Damage("truncated", "entry", count, f"the export header counts {size} entries"))
    if not found and root != walker.edge.root():
        found.add(count, Damage("altered", "log", None, "the export header's root differs from its entries"))
    if not found:
        found.add(count, walker.beyond(c for s, c in due.items() if s > count))
    return walker.result()


def _line(walker: Walker, due: dict[int, StoredCheckpoint], record: Mapping[str, Any]) -> Damage | None:
    """One line: checkpoints wait until the walk reaches their size; entries are checked in order."""
    if record.get("type") == "checkpoint":
        stored = StoredCheckpoint(
            int(record["tree_size"]),
            _unb64(record["root_hash"]),
            int(record["timestamp"]),
            str(record["kid"]),
            str(record["jws"]),
        )
        due[stored.tree_size] = stored
        return walker.checkpoint(stored) if stored.tree_size == walker.edge.size == 0 else None
    if record.get("type") != "entry":
        raise ExportFormatError
    expected, seq = walker.edge.size, record.get("seq")
    if seq != expected:
        kind: DamageKind = "missing" if isinstance(seq, int) and seq > expected else "reordered"
        return Damage(kind, "entry", expected, f"the export has entry {seq!r} at this position")
    digest = _unb64(record["leaf_hash"])
    _, damage = walker.leaf(_unb64(record["leaf_bytes"]), digest)
    if damage:
        return damage
    walker.edge.append(digest)
    return walker.reached(due.get(walker.edge.size))
