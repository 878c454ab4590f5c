"""Benchmark: an audited, consented record read versus a bare FastAPI endpoint, over loopback.

Both servers run as uvicorn with one worker; wrk (Debian package ``wrk``) is the load generator.
Each point also prints the CPU each side spent per request (the server process, its child processes
such as SQLite's audit writer, and for the read on PostgreSQL the database's processes): the ratio
moves with the machine, CPU per request much less.
For each database (SQLite with ``synchronous=FULL``, PostgreSQL with ``synchronous_commit=on``) and
each concurrency (1, 16, 64) it reports requests/s and p50/p99 latency of both, and the ratio of
the audited read's throughput to the bare endpoint's, measured in the same run.

usage: python -m bench.bench_read [--seconds 10] [--runs 3] [--concurrency 1,16,64] [--db sqlite,postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

POSTGRES = os.environ.get("KLUIS_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
BSN = "999993653"


@dataclass
class Figures:
    rps: float
    p50_ms: float
    p99_ms: float
    # CPU per request (µs) of the server process and of PostgreSQL's processes, from /proc: the
    # ratio depends on the machine, CPU per request much less (docs/performance.md).
    server_us: float = 0.0
    database_us: float = 0.0
    # The server's child processes (the audit writer process on SQLite, and the fork server it is
    # forked from): work that runs on another core, but still the machine's.
    children_us: float = 0.0
    # The share of the machine's CPU time the hypervisor took during the run (see steal_share).
    steal: float = 0.0
    # Entries per group-commit batch during the run (the server's /metrics; 0: not measured).
    batch_mean: float = 0.0


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU of each of these processes so far (Linux /proc; left out where it cannot
    be read, e.g. a process that has ended)."""
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two readings; a process that started in between counts in full."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def steal_share(before: list[int], after: list[int]) -> float:
    """The share of the machine's CPU time the hypervisor took (``steal``) between two readings of
    ``machine_ticks``: a virtual machine's noisy neighbours, which make its figures unreliable."""
    total = sum(after) - sum(before)
    return (after[7] - before[7]) / total if total > 0 else 0.0


def machine_ticks() -> list[int]:
    """The machine's CPU time by state (user, nice, system, idle, iowait, irq, softirq, steal...)."""
    return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]


# What a SQLite audit batch of ~8 entries appends to the write-ahead log (~40 pages of 4 KiB:
# docs/performance.md, "What wrk's p99 counts").
BATCH_BYTES = 160 * 1024


def disk_flushes(directory: str, seconds: float, size: int = BATCH_BYTES) -> list[float]:
    """Latencies (s) of ``fdatasync`` after writing ``size`` bytes in ``directory``, one every
    ~10 ms for ``seconds``: how long the disk takes to make a batch durable, and whether it stalls
    (a stall of the disk stalls every commit, and no read may answer before its commit)."""
    path = Path(directory) / "flush-probe.bin"
    block = os.urandom(size)
    latencies = []
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + seconds
        offset = 0
        while time.monotonic() < deadline:
            os.pwrite(fd, block, offset)
            offset = (offset + size) % (64 * size)  # a bounded file, like a write-ahead log
            started = time.perf_counter()
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - started)
            time.sleep(0.01)
    finally:
        os.close(fd)
        path.unlink()
    return latencies


def disk_report(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    if not ordered:
        return "disk: not probed"
    p50, p99 = ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return (
        f"disk between the runs: fdatasync of {BATCH_BYTES // 1024} KiB p50 {p50 * 1e3:.2f} ms "
        f"p99 {p99 * 1e3:.2f} ms max {ordered[-1] * 1e3:.1f} ms"
    )


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children, their children...), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().startswith("postgres"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not come up")


@contextmanager
def server(args: list[str], env: dict[str, str], health: str) -> Iterator[int]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(health)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(15)


def parse_wrk(output: str) -> Figures:
    def ms(value: str) -> float:
        found = re.match(r"([\d.]+)(us|ms|s|m)$", value)
        if found is None:
            raise RuntimeError(f"cannot read wrk's latency {value!r} in:\n{output}")
        number, unit = found.groups()
        return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    # Anchored: "77.50%" at the end of wrk's thread statistics must not pass for the 50th percentile.
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"{errors.group(1)} non-2xx answers during the run")
    return Figures(rps, p50, p99)


def batch_totals(metrics_text: str) -> tuple[float, float]:
    """(batches, entries) so far from a Kluis server's ``kluis_audit_batch_entries`` histogram."""
    count = re.search(r"^kluis_audit_batch_entries_count (\S+)$", metrics_text, re.M)
    total = re.search(r"^kluis_audit_batch_entries_sum (\S+)$", metrics_text, re.M)
    return (float(count.group(1)) if count else 0.0, float(total.group(1)) if total else 0.0)


def batches_of(base: str) -> tuple[float, float]:
    answer = httpx.get(base + "/metrics", timeout=10)
    answer.raise_for_status()  # (kluis_env leaves KLUIS_METRICS_TOKEN out: /metrics is open)
    return batch_totals(answer.text)


def measured(
    url: str, connections: int, seconds: int, token: str | None, server_pid: int, database: bool
) -> Figures:
    """``wrk`` with the CPU the server, its child processes (and PostgreSQL, if ``database``) spent
    per request."""

    def reading() -> tuple[dict[int, float], ...]:
        databases = postgres_pids() if database else []
        return cpu_seconds([server_pid]), cpu_seconds(descendants(server_pid)), cpu_seconds(databases)

    before, ticks = reading(), machine_ticks()
    figures = wrk(url, connections, seconds, token)
    # Read again afterwards: the server opens its hot-path connections (and its writer process)
    # on its first reads.
    after = reading()
    figures.steal = steal_share(ticks, machine_ticks())
    requests = max(figures.rps * seconds, 1.0)
    figures.server_us, figures.children_us, figures.database_us = (
        1e6 * spent(b, a) / requests for b, a in zip(before, after, strict=True)
    )
    return figures


def wrk(url: str, connections: int, seconds: int, token: str | None) -> Figures:
    cmd = [
        "wrk",
        "--latency",
        "-t",
        "1" if connections < 4 else "2",
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
    ]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def kluis_env(data_dir: str, base: str, database_url: str | None) -> dict[str, str]:
    env = dict(
        os.environ,
        KLUIS_DATA_DIR=data_dir,
        KLUIS_ENV="development",
        KLUIS_ISSUER=base,
        KLUIS_BASE_URL=base,
        KLUIS_RATE_LIMIT_PER_MINUTE="100000000",
    )
    if database_url:
        env["KLUIS_DATABASE_URL"] = database_url
    env.pop("KLUIS_METRICS_TOKEN", None)  # the bench reads the server's /metrics
    return env


def cli(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "kluis", *args], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def set_up(env: dict[str, str], data_dir: str) -> tuple[str, str]:
    """A municipality, a client and an approved grant, through the public contracts only."""
    cli(env, "init")
    cli(env, "tenant", "create", "bench", "--name", "Bench")
    cli(env, "department", "create", "--tenant", "bench", "inkomen", "--name", "Werk en inkomen")
    cli(
        env,
        "purpose",
        "add",
        "--tenant",
        "bench",
        "bijstand",
        "--description-nl",
        "Bijstand",
        "--description-en",
        "Assistance",
        "--legal-basis",
        "consent",
        "--categories",
        "inkomen",
        "--max-days",
        "90",
    )
    client = json.loads(
        cli(env, "client", "create", "--tenant", "bench", "--department", "inkomen", "--secret", "--json")
    )
    cli(env, "resident", "add", "--tenant", "bench", "--bsn", BSN)
    record = Path(data_dir) / "inkomen.json"
    # ~2 KiB of content, as in the performance notes.
    record.write_text(
        json.dumps(
            {
                "maandinkomen": 2100.0,
                "werkgever": "Bench BV",
                "toeslagen": [f"toeslag {i:02d} " + "x" * 85 for i in range(20)],
            }
        )
    )
    cli(
        env,
        "record",
        "put",
        "--tenant",
        "bench",
        "--bsn",
        BSN,
        "--category",
        "inkomen",
        "--file",
        str(record),
    )
    resident_token = cli(env, "dev-token", "--tenant", "bench", "--bsn", BSN).splitlines()[-1]
    return f"{client['client_id']}:{client['client_secret']}", resident_token


def obtain_token(base: str, credentials: str, resident_token: str, auth_req_id: list[str]) -> str:
    client_id, secret = credentials.split(":", 1)
    auth = (client_id, secret)
    if not auth_req_id:
        details = json.dumps([{"type": "kluis:records", "categories": ["inkomen"], "purpose": "bijstand"}])
        r = httpx.post(
            base + "/oauth/bc-authorize",
            auth=auth,
            data={"login_hint": BSN, "authorization_details": details},
        )
        r.raise_for_status()
        auth_req_id.append(r.json()["auth_req_id"])
        me = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {resident_token}"})
        pending = [
            x for x in me.get("/api/v1/me/consent-requests").json()["items"] if x["status"] == "pending"
        ]
        me.post(f"/api/v1/me/consent-requests/{pending[0]['id']}/approve", json={}).raise_for_status()
    if len(auth_req_id) > 1:  # later tokens come from the refresh token (the grant is still valid)
        r = httpx.post(
            base + "/oauth/token",
            auth=auth,
            data={"grant_type": "refresh_token", "refresh_token": auth_req_id[1]},
        )
        r.raise_for_status()
        auth_req_id[1] = r.json().get("refresh_token", auth_req_id[1])
        return str(r.json()["access_token"])
    for _ in range(30):
        r = httpx.post(
            base + "/oauth/token",
            auth=auth,
            data={"grant_type": "urn:openid:params:grant-type:ciba", "auth_req_id": auth_req_id[0]},
        )
        if r.status_code == 200:
            auth_req_id.append(r.json()["refresh_token"])
            return str(r.json()["access_token"])
        time.sleep(2.1)
    raise RuntimeError(f"no token: {r.text[:200]}")


def median(values: list[Figures]) -> Figures:
    return Figures(
        statistics.median(v.rps for v in values),
        statistics.median(v.p50_ms for v in values),
        statistics.median(v.p99_ms for v in values),
        statistics.median(v.server_us for v in values),
        statistics.median(v.database_us for v in values),
        statistics.median(v.children_us for v in values),
        statistics.median(v.steal for v in values),
    )


def run(db: str, concurrencies: list[int], seconds: int, runs: int) -> list[tuple[int, Figures, Figures]]:
    data_dir = tempfile.mkdtemp(prefix="kluis-bench-")
    port, bare_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    database_url = None
    schema_engine = None
    if db == "postgres":
        name = f"kluis_bench_{os.getpid()}"
        schema_engine = create_engine(POSTGRES + "/postgres", isolation_level="AUTOCOMMIT")
        with schema_engine.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {name}"))
            c.execute(text(f"CREATE DATABASE {name}"))
        database_url = f"{POSTGRES}/{name}"
    env = kluis_env(data_dir, base, database_url)
    results = []
    try:
        credentials, resident_token = set_up(env, data_dir)
        uvicorn = [
            sys.executable,
            "-m",
            "uvicorn",
            "--no-access-log",
            "--log-level",
            "warning",
            "--workers",
            "1",
        ]
        with (
            server(
                [*uvicorn, "--factory", "kluis.app:create_app", "--port", str(port)],
                env,
                base + "/health/live",
            ) as kluis_pid,
            server(
                [*uvicorn, "bench.bare_app:app", "--port", str(bare_port)],
                env,
                f"http://127.0.0.1:{bare_port}/constant",
            ) as bare_pid,
        ):
            auth_req: list[str] = []
            for connections in concurrencies:
                bare_runs, read_runs = [], []
                flushes: list[float] = []
                for _ in range(runs):
                    token = obtain_token(base, credentials, resident_token, auth_req)
                    bare_runs.append(
                        measured(
                            f"http://127.0.0.1:{bare_port}/constant",
                            connections,
                            seconds,
                            None,
                            bare_pid,
                            database=False,
                        )
                    )
                    time.sleep(3)  # let a saturated worker drain before the next run
                    batches_before = batches_of(base)
                    read_runs.append(
                        measured(
                            base + "/api/v1/records/inkomen",
                            connections,
                            seconds,
                            token,
                            kluis_pid,
                            database=db == "postgres",
                        )
                    )
                    batches, entries = (b - a for a, b in zip(batches_before, batches_of(base), strict=True))
                    read_runs[-1].batch_mean = entries / batches if batches else 0.0
                    # The pause after a read run probes the disk (the bare endpoint does not use it).
                    flushes += disk_flushes(data_dir, 2.5)
                    time.sleep(0.5)
                bare, read = median(bare_runs), median(read_runs)
                results.append((connections, bare, read))
                print(
                    f"{db:8} c={connections:<3} bare {bare.rps:8.0f} req/s p50 {bare.p50_ms:6.2f} ms "
                    f"p99 {bare.p99_ms:6.2f} ms | audited read {read.rps:8.0f} req/s "
                    f"p50 {read.p50_ms:6.2f} ms p99 {read.p99_ms:6.2f} ms | ratio {read.rps / bare.rps:6.1%}",
                    flush=True,
                )
                children = f" + its processes {read.children_us:.0f} us" if read.children_us >= 0.5 else ""
                database = f", PostgreSQL {read.database_us:.0f} us" if db == "postgres" else ""
                print(
                    f"{'':8} {'':5} CPU per request: bare server {bare.server_us:.0f} us | audited read "
                    f"server {read.server_us:.0f} us{children}{database}",
                    flush=True,
                )
                print(
                    f"{'':8} {'':5} {disk_report(flushes)} | hypervisor steal during the runs: "
                    f"bare {bare.steal:.0%}, read {read.steal:.0%}",
                    flush=True,
                )
                means = sorted(r.batch_mean for r in read_runs)
                print(
                    f"{'':8} {'':5} group commit: {statistics.median(means):.1f} entries per durable "
                    f"commit (median of the runs; {means[0]:.1f}-{means[-1]:.1f})",
                    flush=True,
                )
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        if schema_engine is not None:
            with schema_engine.connect() as c:
                c.execute(text(f"DROP DATABASE IF EXISTS kluis_bench_{os.getpid()} WITH (FORCE)"))
            schema_engine.dispose()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--db", default="sqlite,postgres")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    for db in args.db.split(","):
        run(db, concurrencies, args.seconds, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
