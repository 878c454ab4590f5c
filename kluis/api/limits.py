"""Request limits that need the request content: JSON nesting depth.

Python's parser recurses per nesting level, so a deeply nested body could exhaust the stack before
validation ever sees it; the middleware feeds the raw bytes through this scanner (strings skipped)
as they arrive, before anything parses them.
"""

from __future__ import annotations

MAX_JSON_DEPTH = 32


class JsonDepthScanner:
    """Tracks the nesting depth of arrays/objects over a body that arrives in chunks."""

    def __init__(self) -> None:
        self.depth = 0
        self.deepest = 0
        self._in_string = False
        self._escaped = False

    def feed(self, chunk: bytes) -> int:
        depth, deepest, in_string, escaped = self.depth, self.deepest, self._in_string, self._escaped
        for byte in chunk:
            if in_string:
                if escaped:
                    escaped = False
                elif byte == 0x5C:  # backslash
                    escaped = True
                elif byte == 0x22:  # quote
                    in_string = False
            elif byte == 0x22:
                in_string = True
            elif byte in (0x5B, 0x7B):  # [ {
                depth += 1
                deepest = max(deepest, depth)
            elif byte in (0x5D, 0x7D):  # ] }
                depth -= 1
        self.depth, self.deepest, self._in_string, self._escaped = depth, deepest, in_string, escaped
        return deepest
