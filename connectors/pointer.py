"""JSON Pointer (RFC 6901): read a value from a document, write one into a new document."""

from __future__ import annotations

from typing import Any, Final


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: Returned by :func:`resolve` when the pointer leads nowhere.
MISSING: Final = _Missing()


def parse(pointer: str) -> tuple[str, ...]:
    """The reference tokens of ``pointer``; ``""`` is the whole document."""
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise ValueError("a JSON pointer is empty or starts with '/'")
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/"))


def resolve(document: Any, pointer: str) -> Any:
    """The value at ``pointer``, or :data:`MISSING`."""
    value = document
    for token in parse(pointer):
        if isinstance(value, dict):
            if token not in value:
                return MISSING
            value = value[token]
        elif isinstance(value, list):
            if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
                return MISSING
            index = int(token)
            if index >= len(value):
                return MISSING
            value = value[index]
        else:
            return MISSING
    return value


def assign(document: dict[str, Any], pointer: str, value: Any) -> dict[str, Any]:
    """Set ``value`` at ``pointer`` in ``document``, creating objects on the way; returns the root.

    The empty pointer replaces the whole document, which must then be an object.
    """
    tokens = parse(pointer)
    if not tokens:
        if not isinstance(value, dict):
            raise TypeError("the whole document must be an object")
        return dict(value)
    target = document
    for token in tokens[:-1]:
        nxt = target.setdefault(token, {})
        if not isinstance(nxt, dict):
            raise TypeError("a pointer goes through a value that is not an object")
        target = nxt
    target[tokens[-1]] = value
    return document
