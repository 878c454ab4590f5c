"""The RFC 9162 (Certificate Transparency 2.0) Merkle tree, as pure functions.

Hashes are SHA-256; a leaf hashes as ``H(0x00 || leaf)``, an inner node as ``H(0x01 || left || right)``,
and the empty tree as ``H("")``. ``MTH(D[n])`` splits at the largest power of two smaller than ``n``
(RFC 9162 §2.1.1), so every tree is a sequence of *perfect* subtrees of decreasing size.

A perfect subtree is named ``(level, index)``: it covers leaves ``[index·2^level, (index+1)·2^level)``.
Level 0 is a leaf hash. The storage keeps every completed perfect subtree, so any subtree the RFC
algorithms ask for is a fold of at most ``log2(n)`` stored hashes: proofs need O(log n) reads.

``CompactRange`` is the right edge of a growing tree (one hash per set bit of its size): appending a
leaf yields the perfect subtrees it completes, and the root is a fold of the edge.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from audit.errors import ProofError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeId = tuple[int, int]  # (level, index) of a perfect subtree
Range = tuple[int, int]  # leaves [start, end)


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n > 1``): RFC 9162's ``k``."""
    if n < 2:
        raise ValueError("a tree of fewer than two leaves does not split")
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """``MTH`` of a whole list of leaf hashes, in one pass."""
    edge = CompactRange()
    for h in hashes:
        edge.append(h)
    return edge.root()


def fold(hashes: Sequence[bytes]) -> bytes:
    """Combine the perfect subtrees of a range (largest first) the way ``MTH`` does: from the right."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for h in reversed(hashes[:-1]):
        result = node_hash(h, result)
    return result


def range_nodes(start: int, end: int) -> list[NodeId]:
    """The perfect subtrees whose fold is ``MTH(D[start:end])``, largest first.

    Valid for the ranges the RFC recursion produces: ``start`` is a multiple of a power of two at
    least as large as ``end - start`` rounded down, so every piece is aligned.
    """
    if not 0 <= start < end:
        raise ValueError("empty or negative range")
    nodes: list[NodeId] = []
    position = start
    for level in range((end - start).bit_length() - 1, -1, -1):
        if (end - start) >> level & 1:
            if position % (1 << level):
                raise ValueError("range is not aligned to its subtrees")
            nodes.append((level, position >> level))
            position += 1 << level
    return nodes


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose ``MTH`` form ``PATH(index, D[size])`` (RFC 9162 §2.1.3.1), leaf side first."""
    if not 0 <= index < size:
        raise ProofError("leaf index outside the tree")
    ranges: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def consistency_ranges(first: int, second: int) -> list[Range]:
    """The ranges whose ``MTH`` form ``PROOF(first, D[second])`` (RFC 9162 §2.1.4.1)."""
    if not 0 <= first <= second:
        raise ProofError("the first tree is larger than the second")
    if first in (0, second):
        return []
    ranges: list[Range] = []
    start, end, whole = 0, second, True
    while True:
        if first - start == end - start:
            if not whole:
                ranges.append((start, end))
            break
        k = split_point(end - start)
        if first - start <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            whole = False
    ranges.reverse()
    return ranges


def hashes_for(ranges: Iterable[Range], subtree: Callable[[NodeId], bytes]) -> list[bytes]:
    """``MTH`` of each range, given a look-up of perfect subtrees (a store or a test oracle)."""
    return [fold([subtree(node) for node in range_nodes(start, end)]) for start, end in ranges]


def nodes_for(ranges: Iterable[Range]) -> set[NodeId]:
    """Every perfect subtree needed to compute ``ranges``: what to read from storage, in one go."""
    return {node for start, end in ranges for node in range_nodes(start, end)}


def _check_hash(value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError("a hash has the wrong length")


def root_from_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2: the root that ``path`` proves ``leaf`` (a leaf hash) to be under."""
    if not 0 <= index < size:
        raise ProofError("leaf index outside the tree")
    _check_hash(leaf)
    fn, sn, r = index, size - 1, leaf
    for p in path:
        _check_hash(p)
        if sn == 0:
            raise ProofError("inclusion proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof too short")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes) -> None:
    """Raise ``ProofError`` unless ``path`` proves ``leaf`` at ``index`` in the tree ``(size, root)``."""
    _check_hash(root)
    if root_from_inclusion(index, size, leaf, path) != root:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: raise ``ProofError`` unless tree ``second`` extends tree ``first``."""
    _check_hash(first_root)
    _check_hash(second_root)
    for c in proof:
        _check_hash(c)
    if not 0 <= first <= second:
        raise ProofError("the first tree is larger than the second")
    if first == second:
        if proof or first_root != second_root:
            raise ProofError("equal trees need equal roots and an empty proof")
        return
    if first == 0:
        if proof:
            raise ProofError("every tree extends the empty tree; the proof must be empty")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first tree is itself a node of the second
        path.insert(0, first_root)
    fr, sr = _consistency_roots(first, second, path)
    if fr != first_root or sr != second_root:
        raise ProofError("consistency proof does not match the roots")


def _consistency_roots(first: int, second: int, path: list[bytes]) -> tuple[bytes, bytes]:
    """Steps 3-7 of RFC 9162 §2.1.4.2: both roots as the proof computes them."""
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof too short")
    return fr, sr


class CompactRange:
    """The right edge of a tree: the perfect subtrees of ``[0, size)``, largest first."""

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise ValueError("the edge does not match the tree size")
        self.size = size
        self.hashes = list(hashes)

    @classmethod
    def from_bytes(cls, size: int, packed: bytes) -> CompactRange:
        if len(packed) != HASH_SIZE * size.bit_count():
            raise ValueError("the stored edge does not match the tree size")
        return cls(size, [packed[i : i + HASH_SIZE] for i in range(0, len(packed), HASH_SIZE)])

    def to_bytes(self) -> bytes:
        return b"".join(self.hashes)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; return the perfect subtrees of level ≥ 1 it completes ``(level, index, hash)``."""
        completed: list[tuple[int, int, bytes]] = []
        n, h, level = self.size, leaf, 0
        while n >> level & 1:  # the smallest edge subtree has this leaf's size: merge them
            h = node_hash(self.hashes.pop(), h)
            level += 1
            completed.append((level, n >> level, h))
        self.hashes.append(h)
        self.size = n + 1
        return completed

    def root(self) -> bytes:
        return fold(self.hashes)
