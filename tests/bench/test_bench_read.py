"""The read benchmark's own arithmetic (the benchmark itself needs wrk and runs outside the suite):
reading wrk's report, and the CPU per request it prints next to the ratio."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from bench.bench_read import cpu_seconds, descendants, parse_wrk, spent

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
