from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from audit.schemas import Actor, TraceContext
from kluis.db import Database
from tests.conftest import Clock
from vault.keys import FileKeyProvider
from vault.models import Tenant
from vault.services import Context, VaultService

BSN_A = "999993653"
BSN_B = "111222333"


@pytest.fixture
def keys(tmp_path: Path) -> FileKeyProvider:
    return FileKeyProvider(tmp_path / "keys" / "keys.json")


@pytest.fixture
def vault(keys: FileKeyProvider) -> VaultService:
    return VaultService(keys)


@pytest.fixture
def ctx(clock: Clock) -> Callable[[], Context]:
    def make() -> Context:
        return Context(actor=Actor(type="operator", id="cli:test"), trace=TraceContext.new(), now=clock())

    return make


@pytest.fixture
def tenant(db: Database, vault: VaultService, ctx: Callable[[], Context]) -> Tenant:
    with db.session() as session:
        return vault.create_tenant(session, ctx(), "gemeente-a", "Gemeente A")
