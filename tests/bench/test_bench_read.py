"""The read benchmark's own arithmetic (the benchmark itself needs wrk and runs outside the suite):
reading wrk's report, the CPU per request it prints next to the ratio, and the machine's state it
prints with them (the hypervisor's steal time, the disk's flush latency)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.bench_read import (
    cpu_seconds,
    descendants,
    disk_flushes,
    disk_report,
    machine_ticks,
    parse_wrk,
    spent,
    steal_share,
)

WRK_REPORT = """Running 5s test @ http://127.0.0.1:8000/api/v1/records/inkomen
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     9.81ms    4.02ms  77.50ms   77.50%
    Req/Sec     0.82k   101.21     1.02k    71.00%
  Latency Distribution
     50%    9.67ms
     75%   11.20ms
     90%   13.91ms
     99%   19.38ms
  8181 requests in 5.01s, 18.97MB read
Requests/sec:   1563.47
Transfer/sec:      3.79MB
"""


def test_wrk_report_gives_throughput_and_the_percentiles_not_the_stdev_column() -> None:
    figures = parse_wrk(WRK_REPORT)
    assert (figures.rps, figures.p50_ms, figures.p99_ms) == (1563.47, 9.67, 19.38)
    micro = parse_wrk(WRK_REPORT.replace("9.67ms", "870.00us").replace("19.38ms", "1.20s"))
    assert (micro.p50_ms, micro.p99_ms) == (0.87, 1200.0)


def test_a_run_with_errors_is_refused() -> None:
    with pytest.raises(RuntimeError, match="non-2xx"):
        parse_wrk(WRK_REPORT + "  Non-2xx or 3xx responses: 12\n")


def test_cpu_between_readings_counts_new_processes_in_full() -> None:
    own = cpu_seconds([os.getpid(), 2**22 + 7])  # the second cannot exist (above pid_max's default)
    assert set(own) == {os.getpid()} and own[os.getpid()] > 0
    assert spent({1: 2.0, 2: 1.0}, {1: 2.5, 3: 0.25}) == pytest.approx(0.75)  # 2 ended, 3 started


def test_descendants_are_children_and_their_children_only() -> None:
    # A child that starts a grandchild; both sleep until killed.
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    script = f"import subprocess, time; subprocess.Popen({sleeper!r}); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 10
        while not descendants(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        [grandchild] = descendants(child.pid)
        below = descendants(os.getpid())
        assert child.pid in below and grandchild in below and os.getpid() not in below
        assert descendants(grandchild) == []
    finally:
        for pid in descendants(child.pid):
            os.kill(pid, signal.SIGKILL)
        child.kill()
        child.wait()


def test_steal_is_the_hypervisors_share_of_all_cpu_time_between_readings() -> None:
    #         user nice system idle iowait irq softirq steal guest guest_nice
    before = [100, 0, 50, 800, 10, 0, 5, 35, 0, 0]
    after = [160, 0, 70, 900, 10, 0, 5, 55, 0, 0]  # 200 ticks, 20 of them stolen
    assert steal_share(before, after) == pytest.approx(0.10)
    assert steal_share(before, before) == 0.0
    now = machine_ticks()
    assert len(now) >= 8 and all(value >= 0 for value in now)


def test_disk_probe_flushes_batch_sized_writes_and_leaves_nothing_behind(tmp_path: Path) -> None:
    latencies = disk_flushes(str(tmp_path), 0.2)
    assert latencies and all(0 < latency < 5 for latency in latencies)
    assert list(tmp_path.iterdir()) == []


def test_disk_report_gives_median_99th_percentile_and_worst() -> None:
    report = disk_report([0.001] * 98 + [0.004, 0.140])
    assert "p50 1.00 ms" in report and "p99 140.00 ms" in report and "max 140.0 ms" in report
    assert disk_report([0.002] * 200 + [0.009, 0.3]).count("p99 2.00 ms") == 1
    assert disk_report([]) == "disk: not probed"


def test_batch_totals_read_the_group_commit_histogram() -> None:
    from bench.bench_read import batch_totals

    scraped = (
        "# HELP kluis_audit_batch_entries Entries per batch\n"
        "# TYPE kluis_audit_batch_entries histogram\n"
        'kluis_audit_batch_entries_bucket{le="1.0"} 3.0\n'
        "kluis_audit_batch_entries_count 12.0\n"
        "kluis_audit_batch_entries_sum 87.0\n"
        "kluis_audit_batch_entries_created 1.7e+09\n"
    )
    assert batch_totals(scraped) == (12.0, 87.0)
    assert batch_totals("kluis_http_requests_total 5.0\n") == (0.0, 0.0)  # a server without it
