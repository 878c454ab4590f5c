"""``kluis audit`` as an operator types it (SQLite data directory): verify, export, checkpoint."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kluis.cli import build_app


@pytest.fixture
def main(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """The real entry point (one-line errors, exit codes), as the shell runs it."""
    from kluis.cli import main as entry_point

    def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        monkeypatch.setattr("sys.argv", ["kluis", *args])
        with pytest.raises(SystemExit) as exit_info:
            entry_point()
        return int(exit_info.value.code or 0), capsys.readouterr().err

    return run


@pytest.fixture
def kluis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KLUIS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KLUIS_ENV", "development")
    monkeypatch.delenv("KLUIS_DATABASE_URL", raising=False)
    runner = CliRunner()
    app = build_app()

    def run(*args: str, ok: bool = True):
        result = runner.invoke(app, list(args))
        if ok:
            assert result.exit_code == 0, (args, result.output, result.exception)
        return result

    run("init")
    run("tenant", "create", "clidam", "--name", "Clidam")
    return run


def test_checkpoint_verify_export_and_offline_verify(kluis, tmp_path: Path) -> None:
    signed = json.loads(kluis("audit", "checkpoint", "--tenant", "clidam", "--json").stdout)
    assert set(signed) >= {"tree_size", "root_hash", "jws"} and signed["tree_size"] >= 1
    assert "no log grew" in kluis("audit", "checkpoint").stdout

    result = json.loads(kluis("audit", "verify", "--tenant", "clidam", "--json").stdout)
    assert result["ok"] and result["checkpoints"] == 1 and result["damage"] is None
    text = kluis("audit", "verify", "--tenant", "clidam").stdout
    assert "verified" in text and "1 checkpoints" in text
    # --since: from the signed checkpoint at or below that size, which the answer names.
    since = signed["tree_size"] + 5
    partial = json.loads(
        kluis("audit", "verify", "--tenant", "clidam", "--since", str(since), "--json").stdout
    )
    assert partial["ok"] and partial["since"] == signed["tree_size"] and result["since"] == 0
    assert partial["entries"] > result["entries"]  # the first verification was audited meanwhile
    text = kluis("audit", "verify", "--tenant", "clidam", "--since", str(since)).stdout
    assert f"from the signed checkpoint at {signed['tree_size']}" in text

    exported = tmp_path / "clidam.jsonl"
    kluis("audit", "export", "--tenant", "clidam", "--output", str(exported))
    keys = tmp_path / "jwks.json"
    keys.write_text(kluis("audit", "keys", "--json").stdout)
    witness = tmp_path / "checkpoint.json"
    witness.write_text(json.dumps(signed))
    offline = kluis(
        "audit", "verify", "--file", str(exported), "--keys", str(keys), "--witness", str(witness), "--json"
    )
    doc = json.loads(offline.stdout)
    whole_only = kluis(
        "audit", "verify", "--file", str(exported), "--keys", str(keys), "--since", "3", ok=False
    )
    assert whole_only.exit_code == 1
    # The verification and the export were audited too: the log grew past the checkpoint.
    assert (
        doc["ok"] and doc["entries"] > signed["tree_size"] and doc["latest_checkpoint"] == signed["tree_size"]
    )


def test_damage_exits_non_zero_naming_seq_and_kind(kluis, main, tmp_path: Path) -> None:
    kluis("audit", "checkpoint", "--tenant", "clidam")
    database = sqlite3.connect(tmp_path / "data" / "kluis.db")
    database.execute("DROP TRIGGER audit_entry_no_update")
    database.execute("UPDATE audit_entry SET department = 'forged' WHERE seq = 0")
    database.commit()
    database.close()
    code, err = main("audit", "verify", "--tenant", "clidam")
    assert code == 1
    assert err.count("\n") == 1 and "entry 0: altered" in err and "search column department" in err
    as_json = kluis("audit", "verify", "--tenant", "clidam", "--json", ok=False)
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["damage"]["seq"] == 0
    # From the checkpoint on, entry 0 is not read again: only the full run sees its change.
    size = str(json.loads(as_json.stdout)["entries"] + 100)
    assert kluis("audit", "verify", "--tenant", "clidam", "--since", size).exit_code == 0


def test_errors_are_one_line(kluis, main, tmp_path: Path) -> None:
    not_keys = tmp_path / "keys.json"
    not_keys.write_text('{"keys": []}')
    export = tmp_path / "x.jsonl"
    export.write_text("not an export\n")
    keys = tmp_path / "jwks.json"
    keys.write_text(kluis("audit", "keys", "--json").stdout)
    for args in (
        (),
        ("--tenant", "nowhere"),
        ("--file", str(export)),
        ("--file", str(export), "--keys", str(not_keys)),
        ("--file", str(export), "--keys", str(keys)),
    ):
        code, err = main("audit", "verify", *args)
        assert code != 0 and err.startswith("kluis: error: ") and err.count("\n") == 1, err
