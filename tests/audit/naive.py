"""The RFC 9162 definitions, written as literally (and slowly) as the RFC states them.

The oracle the property tests compare ``audit.merkle`` and the database against; it shares no code
with the package.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: tuple[bytes, ...]) -> bytes:
    """MTH(D[n]) of RFC 9162 §2.1.1, over leaf *data*."""
    return _mth(leaves)


@lru_cache(maxsize=200_000)
def _mth(leaves: tuple[bytes, ...]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = _k(n)
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def path(m: int, leaves: tuple[bytes, ...]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1."""
    n = len(leaves)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*path(m, leaves[:k]), _mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), _mth(leaves[:k])]


def proof(m: int, leaves: tuple[bytes, ...]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1."""
    if m in (0, len(leaves)):
        return []
    return _subproof(m, leaves, True)


def _subproof(m: int, leaves: tuple[bytes, ...], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [_mth(leaves)]
    k = _k(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], b), _mth(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), _mth(leaves[:k])]
