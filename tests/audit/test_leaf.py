"""Leaf bytes: the known answer, equality with RFC 8785 (the ``rfc8785`` package), strict parsing."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import leaf, merkle
from audit.errors import InvalidEventError, LeafFormatError
from audit.schemas import Actor, AuditEvent, TraceContext
from tests.audit.factories import event

VECTOR = json.loads((Path(__file__).parent / "vectors" / "leaf.json").read_text(encoding="utf-8"))


def vector_event() -> AuditEvent:
    doc = dict(VECTOR["event"])
    doc["actor"] = Actor(**doc["actor"])
    doc["trace"] = TraceContext(**doc["trace"])
    doc["start_time"] = datetime.fromisoformat(doc["start_time"])
    doc["end_time"] = datetime.fromisoformat(doc["end_time"])
    doc["categories"] = tuple(doc["categories"])
    return AuditEvent(**doc)


def test_leaf_known_answer() -> None:
    data = leaf.encode_leaf(VECTOR["seq"], vector_event())
    assert data.hex() == VECTOR["leaf_bytes_hex"]
    assert merkle.leaf_hash(data).hex() == VECTOR["leaf_hash"]
    assert data == b"\x01" + rfc8785.dumps(leaf.leaf_object(VECTOR["seq"], vector_event()))


def test_decoding_gives_back_the_event_at_millisecond_precision() -> None:
    original = vector_event()
    seq, decoded = leaf.decode_leaf(leaf.encode_leaf(7, original))
    assert seq == 7
    assert decoded == dataclasses.replace(
        original,
        start_time=datetime(2026, 3, 3, 13, 2, 0, 123000, tzinfo=UTC),
        end_time=datetime(2026, 3, 3, 13, 2, 0, 140000, tzinfo=UTC),
    )


printable = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20).filter(str.isprintable)
detail_values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1), printable
)


@settings(max_examples=300, deadline=None)
@given(
    actor_id=printable,
    subject=st.none() | printable,
    categories=st.lists(printable, max_size=4),
    details=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), detail_values, max_size=5
    ),
    millis=st.integers(min_value=0, max_value=2**42),
)
def test_the_fast_encoder_is_rfc8785(actor_id, subject, categories, details, millis) -> None:
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis)
    candidate = event(
        3,
        actor=Actor(type="client", id=actor_id),
        data_subject_id=subject,
        categories=tuple(categories),
        details=details,
        start_time=when,
        end_time=when,
    )
    obj = leaf.leaf_object(11, candidate)
    assert leaf.canonical(obj) == rfc8785.dumps(obj)
    assert leaf.decode_leaf(leaf.encode(obj))[1].details == details


def test_tricky_strings_stay_canonical_or_are_refused() -> None:
    for text in ('quote " and \\ slash /', "é", "\U0001f600", "<script>", "a b"):
        obj = leaf.leaf_object(0, event(0, details={"s": text}))
        assert leaf.canonical(obj) == rfc8785.dumps(obj)
    # Control, format and separator characters and lone surrogates never reach a leaf.
    for text in ("\u2028", "\u00a0", "\u007f", "\n", "\ufeff", "\ud800", "\u200b"):
        with pytest.raises(InvalidEventError):
            leaf.leaf_object(0, event(0, details={"s": text}))
    assert leaf.leaf_object(0, event(0, details={"fields": ""}))["details"] == {"fields": ""}
    with pytest.raises(InvalidEventError):  # ids are never empty
        leaf.leaf_object(0, event(0, actor=Actor(type="client", id="")))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x02{}",
        b"\x01not json",
        b"\x01[]",
        b"\x01{}",
        b'\x01{"seq": 1}',
    ],
)
def test_parse_refuses_what_is_not_an_entry(data: bytes) -> None:
    with pytest.raises(LeafFormatError):
        leaf.parse(data)


def test_parse_refuses_extra_or_missing_members() -> None:
    obj = leaf.leaf_object(0, event(0))
    with pytest.raises(LeafFormatError):
        leaf.parse(leaf.encode({**obj, "extra": 1}))
    del obj["reason"]
    with pytest.raises(LeafFormatError):
        leaf.parse(leaf.encode(obj))


def test_times_are_milliseconds_after_1970_and_must_carry_a_zone() -> None:
    assert leaf.to_ms(datetime(1970, 1, 1, 0, 0, 0, 1999, tzinfo=UTC)) == 1
    with pytest.raises(InvalidEventError):
        leaf.to_ms(datetime(2026, 1, 1))  # the naive time is the point
    with pytest.raises(InvalidEventError):
        leaf.leaf_object(0, event(0, start_time=datetime(1969, 12, 31, tzinfo=UTC)))
