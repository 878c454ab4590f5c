"""Exported logs verify offline with only the pinned keys, and every damage to the file is named."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from jwcrypto import jwk

from audit.checkpoints import CheckpointVerifier, Ed25519CheckpointSigner
from audit.errors import ExportFormatError
from audit.export import verify_export, write_export
from kluis.db import Database
from tests.audit.factories import TENANT, build_log, event, fill, forged_signature

Edit = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory, signer: Ed25519CheckpointSigner
) -> list[dict[str, Any]]:
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('export') / 'kluis.db'}")
    db.migrate()
    build_log(db, signer)
    fill(db, 2, start=13)  # two entries no checkpoint covers yet
    out = io.StringIO()
    with db.read_session() as session:
        assert write_export(session, TENANT, out) == 15
    db.dispose()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def lines(records: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(r) for r in records]


def test_the_export_has_header_checkpoints_then_entries(exported: list[dict[str, Any]]) -> None:
    assert exported[0]["format"] == "kluis-audit-log" and exported[0]["tree_size"] == 15
    assert [r["type"] for r in exported[1:4]] == ["checkpoint"] * 3
    assert [r["seq"] for r in exported[4:]] == list(range(15))


def test_an_untouched_export_verifies(exported: list[dict[str, Any]], verifier: CheckpointVerifier) -> None:
    result = verify_export(lines(exported), verifier)
    assert result.ok and (result.entries, result.checkpoints, result.latest_checkpoint) == (15, 3, 13)


def _flip_leaf(records: list[dict[str, Any]], seq: int) -> list[dict[str, Any]]:
    data = bytearray(base64.b64decode(records[4 + seq]["leaf_bytes"]))
    data[len(data) // 2] ^= 1
    records[4 + seq] = {**records[4 + seq], "leaf_bytes": base64.b64encode(bytes(data)).decode()}
    return records


def _both_hashes(records: list[dict[str, Any]], seq: int) -> list[dict[str, Any]]:
    """Change an entry and its leaf hash: only the tree (and a checkpoint) can tell."""
    from audit import leaf, merkle

    forged = leaf.encode_leaf(seq, event(seq, department="forged"))
    records[4 + seq] = {
        **records[4 + seq],
        "leaf_bytes": base64.b64encode(forged).decode(),
        "leaf_hash": base64.b64encode(merkle.leaf_hash(forged)).decode(),
    }
    return records


CASES: dict[str, tuple[Edit, tuple[str, str, int | None]]] = {
    "altered leaf": (lambda r: _flip_leaf(r, 6), ("altered", "entry", 6)),
    "altered leaf and hash": (lambda r: _both_hashes(r, 6), ("altered", "log", 5)),
    "altered uncovered leaf and hash": (lambda r: _both_hashes(r, 14), ("altered", "log", None)),
    "missing entry": (lambda r: r[:8] + r[9:], ("missing", "entry", 4)),
    "swapped entries": (lambda r: [*r[:7], r[8], r[7], *r[9:]], ("missing", "entry", 3)),
    "truncated tail": (lambda r: r[:-3], ("truncated", "entry", 12)),
    "bad checkpoint": (
        lambda r: [r[0], {**r[1], "jws": forged_signature(r[1]["jws"])}, *r[2:]],
        ("bad_signature", "checkpoint", None),
    ),
    "checkpoint column": (
        lambda r: [r[0], r[1], {**r[2], "timestamp": r[2]["timestamp"] + 1}, *r[3:]],
        ("altered", "checkpoint", None),
    ),
    "garbage line": (lambda r: [*r[:10], {"type": "entry", "seq": 6}, *r[11:]], ("altered", "entry", 6)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_damage_to_the_file_is_named(
    name: str, exported: list[dict[str, Any]], verifier: CheckpointVerifier
) -> None:
    edit, expected = CASES[name]
    damage = verify_export(lines(edit([dict(r) for r in exported])), verifier).damage
    assert damage is not None
    assert (damage.kind, damage.where, damage.seq) == expected, damage.describe()


def test_a_truncated_file_with_a_rewritten_header_is_caught_by_checkpoints(
    exported: list[dict[str, Any]], verifier: CheckpointVerifier
) -> None:
    from audit import merkle

    kept = exported[:4] + exported[4:14]  # ten entries; checkpoints of 11 and 13 remain
    root = merkle.root_from_leaf_hashes([base64.b64decode(r["leaf_hash"]) for r in kept[4:]])
    kept[0] = {**kept[0], "tree_size": 10, "root_hash": base64.b64encode(root).decode()}
    damage = verify_export(lines(kept), verifier).damage
    assert damage is not None and (damage.kind, damage.seq) == ("truncated", 10)
    # And with the checkpoints removed too, only a witnessed checkpoint can tell.
    bare = [kept[0], kept[1], *kept[4:]]
    assert verify_export(lines(bare), verifier).ok
    damage = verify_export(lines(bare), verifier, witnessed=[exported[3]["jws"]]).damage
    assert damage is not None and (damage.kind, damage.seq) == ("truncated", 10)


def test_only_pinned_keys_count(exported: list[dict[str, Any]]) -> None:
    stranger = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="checkpoint-test-1")
    damage = verify_export(
        lines(exported), CheckpointVerifier({"keys": [stranger.export_public(as_dict=True)]})
    ).damage
    assert damage is not None and damage.kind == "bad_signature"


@pytest.mark.parametrize("first", ["", "[]", '{"format": "something-else", "version": 1}', "not json"])
def test_files_that_are_not_exports_are_refused(first: str, verifier: CheckpointVerifier) -> None:
    with pytest.raises(ExportFormatError):
        verify_export([first] if first else [], verifier)
