"""Verification: recompute a tenant's whole log and name the first damage.

Walking the entries in sequence order (chunked reads, constant memory), for every entry:

* it exists at the next position (else *missing*, or *truncated* at the tail);
* its leaf bytes parse and hash to the stored leaf hash, belong to this tenant, and its indexed
  search columns equal what the leaf says (else *altered*); a complete, self-consistent entry that
  names another position is *reordered*;
* the perfect subtrees its leaf completes equal the stored nodes (else the node is *altered* or
  *missing*; the damage names the first entry under it);
* a checkpoint at this tree size (stored, or *witnessed*: kept outside the database and handed in)
  has a valid signature by a pinned key (else *bad_signature*), its columns equal its signed payload
  (else *altered*), and its root equals the recomputed root (else the entries were rewritten after
  it was signed: *altered*, naming the previous good checkpoint as the first suspect entry).

Then the log state: a state behind the entries is *rolled_back*, one ahead of them means the tail
was *truncated*, and its root and right edge must be those of the entries. No node may lie outside
the tree, and no checkpoint may vouch for more entries than exist (*truncated*).

What it cannot see alone: a database administrator who rewrites entries, nodes, state and the stored
checkpoints consistently (or deletes the newest of them). Checkpoints kept outside the database,
by residents and by an outside party, catch that: pass them as ``witnessed``.

**Incremental** (``since``: a tree size an earlier verification reached without damage): the walk
starts at the largest stored checkpoint at or below it instead of at entry 0. That checkpoint's
signature is checked, and the right edge of its tree is read from the stored subtrees and must hash
to its signed root; the walk then checks every entry after it, the subtrees they complete (those
reaching back before it come from that edge), every later checkpoint and the state, exactly as a
full walk does. So it proves that the log still extends the signed tree and that everything after
it is intact, reading only what was added. It does not re-read the entries before the checkpoint:
a change to those is found by the next full walk (and by any resident's inclusion proof), which is
why the scheduled job still walks every log completely at a longer interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from audit import leaf, merkle, rawsql
from audit.checkpoints import CheckpointVerifier
from audit.errors import CheckpointSignatureError, LeafFormatError, LogStateError, UnknownLogError
from audit.models import CHECKPOINT, ENTRY, NODE, STATE
from audit.schemas import b64
from audit.services import stored_subtrees

DamageKind = Literal["altered", "missing", "reordered", "truncated", "rolled_back", "bad_signature"]
Where = Literal["entry", "node", "state", "checkpoint", "log"]


@dataclass(frozen=True, slots=True)
class Damage:
    """The first thing found wrong. ``seq`` is the first entry concerned (``None`` when no entry is);
    ``tree_size`` names the checkpoint or state concerned."""

    kind: DamageKind
    where: Where
    seq: int | None
    detail: str
    tree_size: int | None = None

    def describe(self) -> str:
        if self.where == "checkpoint":
            subject = f"checkpoint at tree size {self.tree_size}"
        elif self.where == "state":
            subject = f"log state (size {self.tree_size})"
        elif self.seq is not None:
            subject = f"entry {self.seq}"
        else:
            subject = "log"
        return f"{subject}: {self.kind.replace('_', ' ')} ({self.detail})"

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "where": self.where,
            "seq": self.seq,
            "tree_size": self.tree_size,
            "detail": self.detail,
            "message": self.describe(),
        }


@dataclass(frozen=True, slots=True)
class VerifyResult:
    tenant_id: str
    origin: str
    entries: int  # entries checked in order before the first damage (all of them if none)
    root_hash: bytes  # the root of those entries
    checkpoints: int  # checkpoints whose signature and root were checked
    latest_checkpoint: int | None  # the largest tree size a good checkpoint vouches for
    damage: Damage | None
    since: int = 0  # the walk started at this tree size (a signed checkpoint); 0: a full walk

    @property
    def ok(self) -> bool:
        return self.damage is None

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "tenant_id": self.tenant_id,
            "origin": self.origin,
            "entries": self.entries,
            "root_hash": b64(self.root_hash),
            "checkpoints": self.checkpoints,
            "latest_checkpoint": self.latest_checkpoint,
            "damage": self.damage.to_json() if self.damage else None,
            "since": self.since,
        }


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A checkpoint as found (database row, export line or a witness's copy): the columns, and the
    JWS they must agree with."""

    tree_size: int
    root_hash: bytes
    timestamp_ms: int
    kid: str
    jws: str


class Findings:
    """Damages found, each at the position of the walk where it shows; the earliest is reported."""

    def __init__(self) -> None:
        self.items: list[tuple[int, int, Damage]] = []

    def add(self, position: int, damage: Damage | None) -> None:
        if damage is not None:
            self.items.append((position, len(self.items), damage))

    def __bool__(self) -> bool:
        return bool(self.items)

    def first(self) -> Damage | None:
        return min(self.items)[2] if self.items else None


class Walker:
    """The checks shared by database and export verification: leaves in order, and checkpoints
    (stored and witnessed) when the walk reaches their tree size."""

    def __init__(
        self, tenant_id: str, origin: str, verifier: CheckpointVerifier, witnessed: Sequence[str] = ()
    ) -> None:
        self.tenant_id = tenant_id
        self.origin = origin
        self.verifier = verifier
        self.edge = merkle.CompactRange()
        self.since = 0
        self.checkpoints = 0
        self.latest_checkpoint: int | None = None
        self.findings = Findings()
        self.witnessed: dict[int, list[StoredCheckpoint]] = {}
        for token in witnessed:
            self._witness(token)

    def _witness(self, token: str) -> None:
        try:
            verified = self.verifier.verify(token)
        except CheckpointSignatureError:
            self.findings.add(
                -1, Damage("bad_signature", "checkpoint", None, "a witnessed checkpoint is not valid")
            )
            return
        p = verified.payload
        stored = StoredCheckpoint(p.tree_size, p.root_hash, p.timestamp_ms, verified.kid, token)
        self.witnessed.setdefault(p.tree_size, []).append(stored)

    def leaf(self, data: bytes, stored_hash: bytes) -> tuple[dict[str, Any] | None, Damage | None]:
        """Check the leaf at the next position (not yet added to the tree)."""
        seq = self.edge.size
        digest = merkle.leaf_hash(data)
        try:
            obj = leaf.parse(data)
        except LeafFormatError:
            return None, Damage("altered", "entry", seq, "the leaf bytes are not a valid entry")
        if obj["seq"] != seq:
            if digest == stored_hash:
                return None, Damage("reordered", "entry", seq, f"holds the entry of position {obj['seq']}")
            return None, Damage("altered", "entry", seq, "the leaf names another position")
        if digest != stored_hash:
            return None, Damage("altered", "entry", seq, "the leaf hash does not match the leaf bytes")
        if obj["tenant"] != self.tenant_id:
            return None, Damage("altered", "entry", seq, "the leaf belongs to another log")
        return obj, None

    def reached(self, stored: StoredCheckpoint | None = None) -> Damage | None:
        """Check the checkpoints of the tree as it stands now: ``stored`` and any witnessed ones."""
        for checkpoint in (*([stored] if stored else []), *self.witnessed.get(self.edge.size, [])):
            damage = self.checkpoint(checkpoint)
            if damage:
                return damage
        return None

    def start_at(self, stored: StoredCheckpoint, edge: merkle.CompactRange | None) -> Damage | None:
        """Start the walk at a stored checkpoint (incremental verification), from ``edge``: the
        right edge of its tree as read from the stored subtrees (``None``: some were missing)."""
        size = stored.tree_size
        damage = self._signed(stored)
        if damage is not None:
            return damage
        if edge is None or edge.size != size:
            return Damage("missing", "node", None, f"stored subtrees of checkpoint {size} are missing", size)
        if edge.root() != stored.root_hash:
            detail = f"the stored subtrees of checkpoint {size} do not hash to its signed root"
            return Damage("altered", "node", None, detail, size)
        self.edge, self.since = edge, size
        self.checkpoints, self.latest_checkpoint = 1, size
        return None

    def _signed(self, stored: StoredCheckpoint) -> Damage | None:
        """Whether a pinned key signed the checkpoint for this log, as its columns say."""
        size = stored.tree_size
        try:
            verified = self.verifier.verify(stored.jws)
        except CheckpointSignatureError:
            return Damage("bad_signature", "checkpoint", None, "no pinned key signed it", size)
        payload = verified.payload
        if (
            payload.tree_size != size
            or payload.root_hash != stored.root_hash
            or payload.timestamp_ms != stored.timestamp_ms
            or verified.kid != stored.kid
        ):
            return Damage("altered", "checkpoint", None, "its columns differ from its signed payload", size)
        if payload.origin != self.origin:
            return Damage("altered", "checkpoint", None, "it was signed for another log", size)
        return None

    def checkpoint(self, stored: StoredCheckpoint) -> Damage | None:
        """Check one checkpoint; its root only if the walk stands at its tree size, else the entries
        it vouches for are gone."""
        size = stored.tree_size
        damage = self._signed(stored)
        if damage is not None:
            return damage
        if size != self.edge.size:
            count = self.edge.size
            return Damage("truncated", "entry", count, f"checkpoint {size} vouches for entries that are gone")
        if stored.root_hash != self.edge.root():
            since = self.latest_checkpoint or 0
            detail = f"entries {since}..{size - 1} were changed after checkpoint {size} was signed"
            return Damage("altered", "log", since, detail, size)
        self.checkpoints += 1
        self.latest_checkpoint = size
        return None

    def beyond(self, stored: Iterable[StoredCheckpoint]) -> Damage | None:
        """The smallest checkpoint larger than the walked log (stored or witnessed), if any: its
        entries were truncated, or it is not ours."""
        larger = [c for size, cs in self.witnessed.items() if size > self.edge.size for c in cs]
        candidates = sorted([*stored, *larger], key=lambda c: c.tree_size)
        return self.checkpoint(candidates[0]) if candidates else None

    def result(self) -> VerifyResult:
        return VerifyResult(
            tenant_id=self.tenant_id,
            origin=self.origin,
            entries=self.edge.size,
            root_hash=self.edge.root(),
            checkpoints=self.checkpoints,
            latest_checkpoint=self.latest_checkpoint,
            damage=self.findings.first(),
            since=self.since,
        )


# -- the database ---------------------------------------------------------------------------------
def checkpoint_rows(
    conn: Connection, tenant_id: str, low: int, high: int | None, *, newest_only: bool = False
) -> list[StoredCheckpoint]:
    """Stored checkpoints with ``low < tree_size <= high`` (no upper bound if ``high`` is None), in
    order; with ``newest_only`` just the largest of them."""
    c = CHECKPOINT.c
    stmt = select(c.tree_size, c.root_hash, c.timestamp_ms, c.kid, c.jws).where(
        c.tenant_id == tenant_id, c.tree_size > low
    )
    if high is not None:
        stmt = stmt.where(c.tree_size <= high)
    stmt = stmt.order_by(c.tree_size.desc()).limit(1) if newest_only else stmt.order_by(c.tree_size)
    rows = conn.execute(stmt)
    return [StoredCheckpoint(r.tree_size, r.root_hash, r.timestamp_ms, r.kid, r.jws) for r in rows]


def _check_nodes(conn: Connection, tenant_id: str, completed: dict[merkle.NodeId, bytes]) -> Damage | None:
    """Compare the subtrees completed in a chunk with the stored ones (one range read per level)."""
    by_level: dict[int, list[int]] = {}
    for level, index in completed:
        by_level.setdefault(level, []).append(index)
    stored: dict[merkle.NodeId, bytes] = {}
    for level, indexes in by_level.items():
        rows = conn.execute(
            select(NODE.c.idx, NODE.c.hash).where(
                NODE.c.tenant_id == tenant_id,
                NODE.c.level == level,
                NODE.c.idx >= min(indexes),
                NODE.c.idx <= max(indexes),
            )
        )
        stored.update(((level, index), value) for index, value in rows.all())
    for level, index in sorted(completed, key=lambda node: (node[1] << node[0], node[0])):
        first, value = index << level, stored.get((level, index))
        if value is None:
            return Damage(
                "missing", "node", first, f"stored subtree (level {level}, index {index}) is missing"
            )
        if value != completed[(level, index)]:
            return Damage("altered", "node", first, f"stored subtree (level {level}, index {index}) differs")
    return None


def verify_log(
    session: Session,
    tenant_id: str,
    verifier: CheckpointVerifier,
    *,
    witnessed: Sequence[str] = (),
    chunk: int = 4096,
    since: int = 0,
) -> VerifyResult:
    """Verify the tenant's log (see the module docstring): the whole log, or with ``since`` > 0
    incrementally from the largest stored checkpoint at or below that tree size (the whole log if
    there is none). Raises ``UnknownLogError``.

    ``witnessed`` are checkpoint JWSs kept outside the database. On PostgreSQL, run this in a
    REPEATABLE READ transaction while writers append: at READ COMMITTED, entries committed during
    the walk would look like a rolled-back state.
    """
    conn = session.connection()
    state = conn.execute(
        select(STATE.c.origin, STATE.c.size, STATE.c.root_hash, STATE.c.frontier).where(
            STATE.c.tenant_id == tenant_id
        )
    ).first()
    if state is None:
        raise UnknownLogError
    walker = Walker(tenant_id, state.origin, verifier, witnessed)
    found = walker.findings
    # Witnessed checkpoints are checked when the walk reaches their size: it must start below
    # every one of them (one of the empty tree, or none stored below: the whole log).
    if walker.witnessed:
        since = min(since, min(walker.witnessed) - 1)
    base = _latest_checkpoint_at_most(conn, tenant_id, since) if since > 0 else []
    if base:
        found.add(-1, walker.start_at(base[0], _edge_at(conn, tenant_id, base[0].tree_size)))
    else:
        empty = checkpoint_rows(conn, tenant_id, -1, 0)  # checkpoints of the empty tree
        found.add(-1, walker.reached(empty[0] if empty else None))
    start = walker.edge.size
    at_state = (walker.edge.root(), walker.edge.to_bytes()) if state.size == start else None
    last = conn.execute(select(func.max(ENTRY.c.seq)).where(ENTRY.c.tenant_id == tenant_id)).scalar()
    seen = -1 if last is None else int(last)  # the last row, dense or not
    if not found and min(state.size, seen + 1) < start:  # the log ends before its starting checkpoint
        end = min(state.size, seen + 1)
        detail = f"checkpoint {start} vouches for entries that are gone"
        found.add(end, Damage("truncated", "entry", end, detail, start))
    while not found and walker.edge.size <= seen:
        snapshot = _walk_chunk(conn, walker, state.size, chunk)
        at_state = snapshot or at_state
    size = walker.edge.size
    if seen + 1 > state.size:  # rows beyond the state: it was rolled back
        detail = f"entries exist beyond its size {state.size}"
        found.add(state.size, Damage("rolled_back", "state", state.size, detail, state.size))
    elif at_state is not None and at_state != (state.root_hash, state.frontier):
        detail = "its root or right edge differs from the entries"
        found.add(state.size, Damage("altered", "state", None, detail, state.size))
    if not found and state.size > size:
        found.add(size, Damage("truncated", "entry", size, f"the log state counts {state.size} entries"))
    if not found:
        found.add(size, walker.beyond(checkpoint_rows(conn, tenant_id, size, None)[:1]))
    if not found and _nodes_outside(conn, tenant_id, size, whole=not base):
        found.add(size, Damage("altered", "node", None, "stored subtrees lie outside the tree"))
    return walker.result()


def _latest_checkpoint_at_most(conn: Connection, tenant_id: str, size: int) -> list[StoredCheckpoint]:
    """The stored checkpoint with the largest tree size in ``1..size`` (none: an empty list); one
    index look-up however many checkpoints there are."""
    return checkpoint_rows(conn, tenant_id, 0, size, newest_only=True)


def _edge_at(conn: Connection, tenant_id: str, size: int) -> merkle.CompactRange | None:
    """The right edge of the first ``size`` entries as stored: the perfect subtrees of their
    decomposition, largest first (``merkle.range_nodes``). ``None`` if one is missing."""
    nodes = merkle.range_nodes(0, size)
    try:
        stored = stored_subtrees(conn, tenant_id, set(nodes))
    except LogStateError:
        return None
    return merkle.CompactRange(size, [stored[node] for node in nodes])


def _nodes_outside(conn: Connection, tenant_id: str, size: int, *, whole: bool) -> bool:
    """Whether stored subtrees lie outside a tree of ``size`` entries. A full walk counts them all
    (a tree of ``size`` leaves has ``size - popcount(size)`` subtrees above its leaves, each of
    which it has compared); an incremental one looks, level by level, for any beyond its end
    (index look-ups: it must not read the whole table)."""
    if whole:
        nodes = conn.execute(select(func.count()).where(NODE.c.tenant_id == tenant_id)).scalar_one()
        return bool(nodes != size - size.bit_count())
    levels = size.bit_length()
    n = NODE.c
    beyond = select(n.level).where(n.tenant_id == tenant_id, (n.level > levels) | (n.level < 1) | (n.idx < 0))
    if conn.execute(beyond.limit(1)).first() is not None:
        return True
    for level in range(1, levels + 1):
        past_end = select(NODE.c.idx).where(
            NODE.c.tenant_id == tenant_id, NODE.c.level == level, NODE.c.idx >= size >> level
        )
        if conn.execute(past_end.limit(1)).first() is not None:
            return True
    return False


def _walk_chunk(conn: Connection, walker: Walker, state_size: int, chunk: int) -> tuple[bytes, bytes] | None:
    """Check the next ``chunk`` positions and the subtrees they complete. Returns the tree's
    (root, edge) if the walk passed the state's size.

    The window has both bounds: an open-ended ``seq >= ?  ORDER BY seq LIMIT ?`` let PostgreSQL,
    without fresh statistics, sort the whole rest of the log for every chunk.
    """
    tenant_id, found, start = walker.tenant_id, walker.findings, walker.edge.size
    m = rawsql.mark(conn)
    rows = rawsql.fetch_all(
        conn,
        f"SELECT seq, leaf_bytes, leaf_hash, {', '.join(leaf.COLUMNS)} FROM audit_entry "  # noqa: S608
        f"WHERE tenant_id = {m} AND seq >= {m} AND seq < {m} ORDER BY seq",
        (tenant_id, start, start + chunk),
    )
    if not rows:  # a gap of a whole window, with rows after it
        found.add(start, Damage("missing", "entry", start, "no entry at this position"))
        return None
    due = {c.tree_size: c for c in checkpoint_rows(conn, tenant_id, start, start + len(rows))}
    completed: dict[merkle.NodeId, bytes] = {}
    snapshot: tuple[bytes, bytes] | None = None
    edge = walker.edge
    for row_seq, raw_data, raw_hash, *stored_columns in rows:  # the hot loop of verification
        seq = edge.size
        if row_seq != seq:
            found.add(seq, Damage("missing", "entry", seq, "no entry at this position"))
            break
        data, stored_hash = bytes(raw_data), bytes(raw_hash)
        obj, damage = walker.leaf(data, stored_hash)
        if obj is not None and (expected := leaf.columns(obj)) != tuple(stored_columns):
            name = next(n for n, a, b in zip(leaf.COLUMNS, expected, stored_columns, strict=True) if a != b)
            damage = Damage("altered", "entry", seq, f"search column {name} differs from the leaf")
        if damage:
            found.add(seq, damage)
            break
        for level, index, value in edge.append(stored_hash):
            completed[(level, index)] = value
        if edge.size == state_size:
            snapshot = (edge.root(), edge.to_bytes())
        if due or walker.witnessed:
            found.add(seq, walker.reached(due.get(edge.size)))
            if found:
                break
    node_damage = _check_nodes(conn, tenant_id, completed) if completed else None
    if node_damage is not None:
        found.add(node_damage.seq or 0, node_damage)  # the first entry under the node
    return snapshot
