"""`kluis doctor` and production refusals: every problem at once, and the app will not start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kluis.settings import Settings


def doctor(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kluis", "doctor", "--json"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_lists_every_problem_and_refuses_to_start(tmp_path: Path) -> None:
    env = {"KLUIS_DATA_DIR": str(tmp_path), "KLUIS_ENV": "development"}
    subprocess.run(
        [sys.executable, "-m", "kluis", "init"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=120,
    )
    subprocess.run(
        [sys.executable, "-m", "kluis", "tenant", "create", "t", "--name", "T"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=120,
    )
    subprocess.run(
        [sys.executable, "-m", "kluis", "department", "create", "--tenant", "t", "inkomen", "--name", "I"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=120,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "kluis",
            "client",
            "create",
            "--tenant",
            "t",
            "--department",
            "inkomen",
            "--secret",
        ],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert doctor(env).returncode == 0
    (tmp_path / "keys.json").chmod(0o644)
    result = doctor({**env, "KLUIS_ENV": "production"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    problems = json.loads(result.stdout)["problems"]
    joined = " ".join(problems)
    for expected in (
        "SQLite",
        "KLUIS_SESSION_SECRET",
        "KLUIS_METRICS_TOKEN",
        "https",
        "readable by others",
        "client secret",
    ):
        assert expected in joined, (expected, problems)
    from kluis.app import create_app

    settings = Settings(env="production", data_dir=tmp_path)
    with pytest.raises(SystemExit, match="refusing to start in production"):
        create_app(settings)


@pytest.mark.postgres
def test_production_refuses_a_postgresql_whose_commits_can_be_lost(tmp_path: Path) -> None:
    from kluis.doctor import durability
    from kluis.wiring import build_services
    from tests.conftest import postgres_schema

    def commit_problems(database_url: str, *, storage_is_durable: bool = False) -> list[str]:
        configured = Settings(
            env="production",
            data_dir=tmp_path,
            database_url=database_url,
            postgres_storage_is_durable=storage_is_durable,
        )
        services = build_services(configured)
        try:
            return [p for p in durability(services) if "synchronous_commit" in p]
        finally:
            services.close()

    with postgres_schema("doctor_") as url:
        # The session's own setting, as a role or database default would give it to Kluis.
        careless = url.replace("?options=", "?options=-csynchronous_commit%3Doff%20")
        # (fsync and full_page_writes are the server's, whatever this machine has: not asserted.)
        assert commit_problems(url) == []
        [problem] = commit_problems(careless)
        assert "synchronous_commit is off" in problem
        # A managed service's durable storage excuses fsync, never an unsynchronised commit.
        assert len(commit_problems(careless, storage_is_durable=True)) == 1


def test_production_refuses_sqlite_below_full_synchronous(tmp_path: Path) -> None:
    from kluis.doctor import durability
    from kluis.wiring import build_services

    for synchronous, expected in (("FULL", []), ("NORMAL", ["KLUIS_SQLITE_SYNCHRONOUS must be FULL"])):
        services = build_services(
            Settings(env="production", data_dir=tmp_path, sqlite_synchronous=synchronous)
        )
        try:
            found = [e for e in expected for p in durability(services) if e in p]
        finally:
            services.close()
        assert found == expected, synchronous
