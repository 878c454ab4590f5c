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
def test_production_refuses_a_database_whose_commits_can_be_lost(tmp_path: Path) -> None:
    from kluis.doctor import durability
    from kluis.wiring import build_services
    from tests.conftest import postgres_schema

    with postgres_schema("doctor_") as url:
        # The session's own setting, as a role or database default would give it to Kluis.
        careless = url.replace("?options=", "?options=-csynchronous_commit%3Doff%20")
        found: dict[str, list[str]] = {}
        for name, database_url in (("as configured", url), ("careless", careless)):
            services = build_services(
                Settings(env="production", data_dir=tmp_path, database_url=database_url)
            )
            try:
                found[name] = [p for p in durability(services) if "synchronous_commit" in p]
            finally:
                services.close()
        # (fsync and full_page_writes are the server's, whatever this machine has: not asserted.)
        assert found["as configured"] == []
        assert len(found["careless"]) == 1 and "synchronous_commit is off" in found["careless"][0]
    loose = build_services(Settings(env="production", data_dir=tmp_path, sqlite_synchronous="NORMAL"))
    try:
        assert ["KLUIS_SQLITE_SYNCHRONOUS must be FULL" in p for p in durability(loose)] == [True]
    finally:
        loose.close()
