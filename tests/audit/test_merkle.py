"""The RFC 9162 tree: published known-answer vectors, then properties against a literal oracle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import merkle
from audit.errors import ProofError
from tests.audit import naive

VECTORS = json.loads((Path(__file__).parent / "vectors" / "merkle.json").read_text())
LEAVES = tuple(bytes.fromhex(h) for h in VECTORS["leaves"])


def hexes(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def oracle(leaves: tuple[bytes, ...]):
    """Perfect subtree look-up computed from the leaves by the oracle."""
    return lambda node: naive.mth(leaves[node[1] << node[0] : (node[1] + 1) << node[0]])


def test_empty_tree_root() -> None:
    assert merkle.EMPTY_ROOT.hex() == VECTORS["empty_root"]
    assert merkle.root_from_leaf_hashes([]) == merkle.EMPTY_ROOT
    assert merkle.CompactRange().root() == merkle.EMPTY_ROOT


@pytest.mark.parametrize("case", VECTORS["leaf_hashes"])
def test_leaf_hash(case: dict[str, str]) -> None:
    assert merkle.leaf_hash(bytes.fromhex(case["leaf"])).hex() == case["hash"]


@pytest.mark.parametrize("case", VECTORS["node_hashes"])
def test_node_hash(case: dict[str, str]) -> None:
    assert merkle.node_hash(bytes.fromhex(case["left"]), bytes.fromhex(case["right"])).hex() == case["hash"]


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_of_trees_of_size_1_to_8(size: int) -> None:
    expected = VECTORS["roots"][size - 1]
    hashes = [merkle.leaf_hash(leaf) for leaf in LEAVES[:size]]
    assert merkle.root_from_leaf_hashes(hashes).hex() == expected
    assert naive.mth(LEAVES[:size]).hex() == expected  # the oracle is right too


@pytest.mark.parametrize(
    "case", VECTORS["inclusion_proofs"], ids=lambda c: f"{c['leaf_index']}-of-{c['tree_size']}"
)
def test_inclusion_proof_vectors(case: dict[str, Any]) -> None:
    index, size, expected = case["leaf_index"], case["tree_size"], hexes(case["audit_path"])
    leaves = LEAVES[:size]
    assert merkle.hashes_for(merkle.inclusion_ranges(index, size), oracle(leaves)) == expected
    root = bytes.fromhex(VECTORS["roots"][size - 1])
    merkle.verify_inclusion(index, size, merkle.leaf_hash(LEAVES[index]), expected, root)


@pytest.mark.parametrize("case", VECTORS["consistency_proofs"], ids=lambda c: f"{c['first']}-{c['second']}")
def test_consistency_proof_vectors(case: dict[str, Any]) -> None:
    first, second, expected = case["first"], case["second"], hexes(case["consistency"])
    assert merkle.hashes_for(merkle.consistency_ranges(first, second), oracle(LEAVES[:second])) == expected
    roots = hexes(VECTORS["roots"])
    merkle.verify_consistency(first, second, roots[first - 1], roots[second - 1], expected)


def _inclusion_probes(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes):
    """Corruptions (after transparency-dev/merkle's verifier tests) that must all be refused."""
    yield index + 1, size, leaf, path, root
    yield index ^ 2, size, leaf, path, root
    yield index, size * 2, leaf, path, root
    yield index, size // 2, leaf, path, root
    yield index, size, merkle.leaf_hash(b"wrong"), path, root
    yield index, size, leaf, path, merkle.EMPTY_ROOT
    yield index, size, leaf, [*path, root], root
    yield index, size, leaf, [root, *path], root
    yield index, size, leaf, [*path, b""], root
    for i in range(len(path)):
        flipped = list(path)
        flipped[i] = bytes([path[i][0] ^ 8]) + path[i][1:]
        yield index, size, leaf, flipped, root
    if path:
        yield index, size, leaf, path[:-1], root


@pytest.mark.parametrize(
    "case", VECTORS["inclusion_proofs"][1:], ids=lambda c: f"{c['leaf_index']}-of-{c['tree_size']}"
)
def test_corrupted_inclusion_proofs_are_refused(case: dict[str, Any]) -> None:
    index, size = case["leaf_index"], case["tree_size"]
    root = bytes.fromhex(VECTORS["roots"][size - 1])
    leaf = merkle.leaf_hash(LEAVES[index])
    for probe in _inclusion_probes(index, size, leaf, hexes(case["audit_path"]), root):
        with pytest.raises(ProofError):
            merkle.verify_inclusion(*probe)


@pytest.mark.parametrize(
    "case", VECTORS["consistency_proofs"][1:], ids=lambda c: f"{c['first']}-{c['second']}"
)
def test_corrupted_consistency_proofs_are_refused(case: dict[str, Any]) -> None:
    first, second, proof = case["first"], case["second"], hexes(case["consistency"])
    roots = hexes(VECTORS["roots"])
    r1, r2 = roots[first - 1], roots[second - 1]
    probes = [
        (first - 1, second, r1, r2, proof),
        (first + 1, second, r1, r2, proof),
        (first ^ 2, second, r1, r2, proof),
        (first, second * 2, r1, r2, proof),
        (first, second // 2 if second // 2 >= first else first, r1, r2, proof),
        (first, second, merkle.EMPTY_ROOT, r2, proof),
        (first, second, r1, merkle.EMPTY_ROOT, proof),
        (first, second, r2, r1, proof),
        (first, second, r1, r2, []),
        (first, second, r1, r2, [*proof, r1]),
        (first, second, r1, r2, [r2, *proof]),
        (first, second, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([proof[i][0] ^ 16]) + proof[i][1:]
        probes.append((first, second, r1, r2, flipped))
    for probe in probes:
        if probe == (first, second, r1, r2, proof):
            continue
        with pytest.raises(ProofError):
            merkle.verify_consistency(*probe)


def test_trivial_consistency_cases() -> None:
    root = merkle.leaf_hash(b"x")
    merkle.verify_consistency(0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [])
    merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, root, [])
    merkle.verify_consistency(3, 3, root, root, [])
    for args in [(3, 3, root, merkle.EMPTY_ROOT, []), (0, 1, root, root, [root]), (2, 1, root, root, [root])]:
        with pytest.raises(ProofError):
            merkle.verify_consistency(*args)


def _leaves(size: int) -> tuple[bytes, ...]:
    return tuple(i.to_bytes(4, "big") for i in range(size))


@settings(max_examples=150, deadline=None)
@given(size=st.integers(min_value=0, max_value=3000))
def test_compact_range_matches_the_oracle(size: int) -> None:
    leaves = _leaves(size)
    edge = merkle.CompactRange()
    for leaf in leaves:
        edge.append(merkle.leaf_hash(leaf))
    assert edge.root() == naive.mth(leaves)
    restored = merkle.CompactRange.from_bytes(size, edge.to_bytes())
    assert restored.root() == edge.root()


@settings(max_examples=60, deadline=None)
@given(size=st.integers(min_value=1, max_value=700))
def test_appending_completes_exactly_the_perfect_subtrees(size: int) -> None:
    leaves = _leaves(size)
    edge = merkle.CompactRange()
    completed = {}
    for leaf in leaves:
        for level, index, value in edge.append(merkle.leaf_hash(leaf)):
            completed[(level, index)] = value
    expected = {(lv, i) for lv in range(1, size.bit_length()) for i in range(size >> lv)}
    assert set(completed) == expected
    look_up = oracle(leaves)
    assert all(value == look_up(node) for node, value in completed.items())


@settings(max_examples=200, deadline=None)
@given(data=st.data(), size=st.integers(min_value=1, max_value=3000))
def test_inclusion_proofs_match_the_oracle(data: st.DataObject, size: int) -> None:
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    leaves = _leaves(size)
    path = merkle.hashes_for(merkle.inclusion_ranges(index, size), oracle(leaves))
    assert path == naive.path(index, leaves)
    root = naive.mth(leaves)
    merkle.verify_inclusion(index, size, merkle.leaf_hash(leaves[index]), path, root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(index, size, merkle.leaf_hash(b"not a leaf"), path, root)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), second=st.integers(min_value=1, max_value=3000))
def test_consistency_proofs_match_the_oracle(data: st.DataObject, second: int) -> None:
    first = data.draw(st.integers(min_value=0, max_value=second))
    leaves = _leaves(second)
    proof = merkle.hashes_for(merkle.consistency_ranges(first, second), oracle(leaves))
    assert proof == naive.proof(first, leaves)
    first_root, second_root = naive.mth(leaves[:first]), naive.mth(leaves)
    merkle.verify_consistency(first, second, first_root, second_root, proof)
    if 0 < first < second:
        with pytest.raises(ProofError):
            merkle.verify_consistency(first, second, merkle.leaf_hash(b"other"), second_root, proof)


@settings(max_examples=100, deadline=None)
@given(leaves=st.lists(st.binary(max_size=40), max_size=40))
def test_roots_depend_on_content_and_order(leaves: list[bytes]) -> None:
    as_tuple = tuple(leaves)
    assert merkle.root_from_leaf_hashes([merkle.leaf_hash(x) for x in as_tuple]) == naive.mth(as_tuple)


def test_range_nodes_are_aligned_and_refuse_misaligned_ranges() -> None:
    assert merkle.range_nodes(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert merkle.range_nodes(8, 13) == [(2, 2), (0, 12)]
    with pytest.raises(ValueError):
        merkle.range_nodes(1, 5)
    with pytest.raises(ProofError):
        merkle.inclusion_ranges(5, 5)


def test_every_size_up_to_3000_against_the_oracle() -> None:
    """Exhaustive: the incremental root of every tree size, and proofs at both ends and the middle."""
    size = 3000
    leaves = [i.to_bytes(4, "big") for i in range(size)]
    ranges = naive.Ranges(leaves)

    def subtree(node: merkle.NodeId) -> bytes:
        return ranges.mth(node[1] << node[0], (node[1] + 1) << node[0])

    edge = merkle.CompactRange()
    for n in range(1, size + 1):
        edge.append(merkle.leaf_hash(leaves[n - 1]))
        root = ranges.mth(0, n)
        assert edge.root() == root, n
        for m in {0, n // 2, n - 1}:
            path = merkle.hashes_for(merkle.inclusion_ranges(m, n), subtree)
            assert path == ranges.path(m, 0, n), (m, n)
            merkle.verify_inclusion(m, n, merkle.leaf_hash(leaves[m]), path, root)
        for first in {1, n // 3, n - 1}:
            proof = merkle.hashes_for(merkle.consistency_ranges(first, n), subtree)
            assert proof == ranges.proof(first, n), (first, n)
            if 0 < first < n:
                merkle.verify_consistency(first, n, ranges.mth(0, first), root, proof)
