"""The operator CLI as an operator's script uses it: exit codes, one-line errors, --json, nothing
written on bad input, never a traceback, never a BSN in the output."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from kluis.cli import main

BSN = "999993653"
INVALID_BSN = "999993654"


def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], data_dir: Path, *args: str
) -> tuple[int, str, str]:
    monkeypatch.setenv("KLUIS_DATA_DIR", str(data_dir))
    monkeypatch.delenv("KLUIS_DATABASE_URL", raising=False)
    monkeypatch.setattr("sys.argv", ["kluis", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), out, err


def counts(data_dir: Path) -> dict[str, int]:
    with sqlite3.connect(data_dir / "kluis.db") as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("tenant", "resident", "record", "record_version", "department")
        }


@pytest.fixture
def town(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    data_dir = tmp_path / "data"
    assert run(monkeypatch, capsys, data_dir, "init")[0] == 0
    assert run(monkeypatch, capsys, data_dir, "init")[0] == 0  # idempotent
    assert (
        run(monkeypatch, capsys, data_dir, "tenant", "create", "gemeente-a", "--name", "Gemeente A")[0] == 0
    )
    code, out, _ = run(
        monkeypatch, capsys, data_dir, "resident", "add", "--tenant", "gemeente-a", "--bsn", BSN, "--json"
    )
    assert code == 0 and set(json.loads(out)) == {"resident_id"} and BSN not in out
    return data_dir


def test_a_record_goes_in_and_comes_out(town: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    doc = tmp_path / "inkomen.json"
    doc.write_text(json.dumps({"maandinkomen": 2100.0, "werkgever": "CLI BV"}))
    code, out, _ = run(
        monkeypatch,
        capsys,
        town,
        "record",
        "put",
        "--tenant",
        "gemeente-a",
        "--bsn",
        BSN,
        "--category",
        "inkomen",
        "--file",
        str(doc),
        "--json",
    )
    assert code == 0 and json.loads(out) == {"category": "inkomen", "version": 1}
    code, out, _ = run(
        monkeypatch,
        capsys,
        town,
        "record",
        "get",
        "--tenant",
        "gemeente-a",
        "--bsn",
        BSN,
        "--category",
        "inkomen",
    )
    assert code == 0 and json.loads(out)["data"] == {"maandinkomen": 2100.0, "werkgever": "CLI BV"}
    assert (
        run(
            monkeypatch,
            capsys,
            town,
            "department",
            "create",
            "--tenant",
            "gemeente-a",
            "inkomen",
            "--name",
            "Werk en inkomen",
        )[0]
        == 0
    )
    code, out, _ = run(monkeypatch, capsys, town, "keys", "rotate", "--tenant", "gemeente-a", "--json")
    assert code == 0 and json.loads(out)["kek_version"] == 2 and json.loads(out)["rewrapped"] == 1
    code, out, _ = run(
        monkeypatch,
        capsys,
        town,
        "record",
        "get",
        "--tenant",
        "gemeente-a",
        "--bsn",
        BSN,
        "--category",
        "inkomen",
    )
    assert code == 0 and json.loads(out)["data"]["werkgever"] == "CLI BV"
    code, _, _ = run(
        monkeypatch, capsys, town, "resident", "erase", "--tenant", "gemeente-a", "--bsn", BSN, "--yes"
    )
    assert code == 0
    code, _, err = run(
        monkeypatch,
        capsys,
        town,
        "record",
        "get",
        "--tenant",
        "gemeente-a",
        "--bsn",
        BSN,
        "--category",
        "inkomen",
    )
    assert code == 1 and err.count("\n") == 1 and "unknown resident" in err


@pytest.mark.parametrize(
    ("args", "file_content", "message"),
    [
        (["resident", "add", "--tenant", "gemeente-a", "--bsn", INVALID_BSN], None, "11-proef"),
        (["resident", "add", "--tenant", "gemeente-a", "--bsn", BSN], None, "already exists"),
        (["resident", "add", "--tenant", "gemeente-x", "--bsn", "111222333"], None, "unknown tenant"),
        (
            ["record", "put", "--tenant", "gemeente-a", "--bsn", BSN, "--category", "bestaat.niet"],
            '{"a": 1}',
            "unknown category",
        ),
        (
            ["record", "put", "--tenant", "gemeente-a", "--bsn", BSN, "--category", "inkomen"],
            '{"maandinkomen": "veel"}',
            "does not match the inkomen schema",
        ),
        (
            ["record", "put", "--tenant", "gemeente-a", "--bsn", BSN, "--category", "inkomen"],
            "{not json",
            "is not valid JSON",
        ),
        (["tenant", "create", "Gemeente A!", "--name", "x"], None, "slug"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    town: Path, tmp_path: Path, monkeypatch, capsys, args, file_content, message
) -> None:
    if file_content is not None:
        doc = tmp_path / "doc.json"
        doc.write_text(file_content)
        args = [*args, "--file", str(doc)]
    before = counts(town)
    code, out, err = run(monkeypatch, capsys, town, *args)
    assert code != 0 and out == ""
    assert err.startswith("kluis: error: ") and err.count("\n") == 1 and message in err
    assert "Traceback" not in err and BSN not in err and INVALID_BSN not in err
    assert counts(town) == before


def test_help_is_everywhere(monkeypatch, capsys, tmp_path: Path) -> None:
    for args in (
        ["--help"],
        ["resident", "--help"],
        ["record", "put", "--help"],
        ["keys", "rotate", "--help"],
    ):
        code, out, _ = run(monkeypatch, capsys, tmp_path, *args)
        assert code == 0 and "Usage" in out


def test_purge_expired_deletes_only_what_expired(town: Path, monkeypatch, capsys) -> None:
    with sqlite3.connect(town / "kluis.db") as conn:
        conn.executemany(
            "INSERT INTO consent_used_assertion (client_id, jti, expires_at) VALUES (?, ?, ?)",
            [
                ("client-x", "old", "2020-01-01 00:00:00.000000"),
                ("client-x", "new", "2999-01-01 00:00:00.000000"),
            ],
        )
    code, out, _ = run(monkeypatch, capsys, town, "purge-expired", "--json")
    assert code == 0
    assert json.loads(out) == {
        "status": "ok",
        "purged": {"portal_sessions": 0, "used_assertions": 1, "revoked_tokens": 0},
        "ended": {"unfetched_grants": 0},
    }
    with sqlite3.connect(town / "kluis.db") as conn:
        assert [r[0] for r in conn.execute("SELECT jti FROM consent_used_assertion")] == ["new"]
    code, out, _ = run(monkeypatch, capsys, town, "purge-expired")
    assert (
        out.strip()
        == "deleted: 0 portal sessions, 0 used assertions, 0 revoked tokens; ended 0 unfetched grants"
    )
    assert code == 0


def test_the_operator_is_the_account_that_runs_the_command_not_what_the_environment_claims(
    town: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os
    import pwd

    from kluis.cli._common import operator_account

    try:
        real = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid without an account
        real = f"uid-{os.getuid()}"
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(variable, "somebody-else")
    assert operator_account() == real
    code, _, _ = run(monkeypatch, capsys, town, "tenant", "create", "claimdam", "--name", "Claimdam")
    assert code == 0
    with sqlite3.connect(town / "kluis.db") as conn:
        actors = {row[0] for row in conn.execute("SELECT DISTINCT actor_id FROM audit_entry")}
    assert f"cli:{real}" in actors and "cli:somebody-else" not in actors
