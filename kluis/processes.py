"""The server's helper processes are forked from one ``multiprocessing`` fork server.

A fork server is a clean process (no threads, no event loop, no open connections: forking the
server itself would be unsafe with its threads) that has imported the helpers' code once; each
helper forks from it in milliseconds, where a new interpreter took ~0.6 s (seconds on a loaded
machine). The helpers: the SQLite audit writer (``kluis.audit_process``) and the periodic
checkpoint signer (``kluis.checkpoint_process``). Both exist to keep work off the server's one
event loop and its GIL (docs/performance.md).
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import ForkServerContext

_HELPERS = ["kluis.audit_process", "kluis.checkpoint_process"]


def forkserver() -> ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    assert isinstance(context, ForkServerContext)
    context.set_forkserver_preload(_HELPERS)  # read when the fork server starts (once per server)
    return context
