"""``bench/bench_growth.py`` at a tiny size, so the benchmark cannot rot unnoticed.

It fills a municipality in bulk, measures every operation and verifies the whole audit log at the
last step. The measured department reads decrypt the bulk-made rows with the services' own code,
so rows the services could not read fail here too. (No ``__init__.py`` in this directory: as a
package it would be ``tests.bench`` and nothing else needs it.)
"""

from __future__ import annotations

import pytest

from bench import bench_growth


def test_help_explains_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench_growth.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--db", "--steps", "--entries-per-resident", "--json"):
        assert option in out


def test_a_tiny_growth_run_fills_measures_and_verifies(db_url: str) -> None:
    kind = "sqlite" if db_url.startswith("sqlite") else "postgres"
    lines: list[str] = []
    steps = bench_growth.run(kind, [300, 900], samples=6, budget=1, say=lines.append, database_url=db_url)

    assert [s.entries >= target for s, target in zip(steps, (300, 900), strict=True)] == [True, True]
    last = steps[-1]
    assert last.residents >= 90
    assert last.records > last.residents  # everyone has a BRP record, some have more
    assert last.versions >= last.records
    assert last.grants > 0
    for key, _label in bench_growth.COLUMNS:
        assert last.latency[key]["n"] >= 3, key
    assert last.sizes["audit_entry"] > 0 and last.sizes["record_version"] > 0
    assert last.verify is not None and last.verify["entries"] >= last.entries
    assert "|" in bench_growth.table_text(steps)
    assert any("entries in" in line for line in lines)
