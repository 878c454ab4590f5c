"""The Dutch citizen service number (BSN) and its 11-proef."""

from __future__ import annotations


def is_valid_bsn(bsn: str) -> bool:
    """True when ``bsn`` is nine digits that pass the 11-proef (weights 9..2 and -1)."""
    if len(bsn) != 9 or not bsn.isascii() or not bsn.isdigit():
        return False
    digits = [int(c) for c in bsn]
    total = sum(d * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True)) - digits[8]
    return total % 11 == 0 and bsn != "000000000"
