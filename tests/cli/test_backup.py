"""SQLite online backup and restore keep the audit log verifiable; the key file is not in the backup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def kluis(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kluis", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_backup_restore_and_the_log_still_verifies(tmp_path: Path) -> None:
    env = {"KLUIS_DATA_DIR": str(tmp_path / "data"), "KLUIS_ENV": "development"}
    for args in (
        ("init",),
        ("tenant", "create", "t", "--name", "T"),
        ("resident", "add", "--tenant", "t", "--bsn", "999993653"),
    ):
        assert kluis(env, *args).returncode == 0
    backup = tmp_path / "backups" / "kluis.db"
    made = kluis(env, "backup", "--to", str(backup), "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["bytes"] > 0
    keys = json.loads((tmp_path / "data" / "keys.json").read_text())
    secrets = [v for t in keys["tenants"].values() for v in t["kek"].values()]
    assert secrets and all(s.encode() not in backup.read_bytes() for s in secrets)  # keys stay apart
    assert kluis(env, "backup", "--to", str(backup)).returncode == 1  # never overwrites
    # Changes after the backup are gone after the restore; the restored log verifies.
    assert kluis(env, "resident", "add", "--tenant", "t", "--bsn", "111222333").returncode == 0
    restored = kluis(env, "restore", "--from", str(backup), "--yes")
    assert restored.returncode == 0, restored.stderr
    verify = kluis(env, "audit", "verify", "--tenant", "t")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    again = kluis(env, "resident", "add", "--tenant", "t", "--bsn", "111222333", "--json")
    assert again.returncode == 0, again.stderr  # the later resident is not in the restored database
