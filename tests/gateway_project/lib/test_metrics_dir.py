"""Each server's own directory of metric files: named for the process that owns the server
and its start time, stale ones removed at start, dead workers' live gauges dropped."""

from __future__ import annotations

import os
from pathlib import Path

from gateway_project.lib import metrics_dir

# Never a process id: ids stay below the kernel's pid_max.
NO_SUCH_PID = int(Path("/proc/sys/kernel/pid_max").read_text())


def test_a_process_of_its_own_owns_its_directory(tmp_path):
    pid = os.getpid()
    assert metrics_dir.server_dir(tmp_path) == tmp_path / f"{pid}-{metrics_dir.start_time(pid)}"


def test_claim_points_prometheus_at_it_whatever_was_inherited(tmp_path, monkeypatch):
    monkeypatch.setenv(metrics_dir.ENV, "/a/directory/inherited/from/a/parent")
    path = metrics_dir.claim(tmp_path)
    assert os.environ[metrics_dir.ENV] == str(path) == str(metrics_dir.server_dir(tmp_path))


def test_directories_of_servers_that_are_gone_are_removed(tmp_path):
    own = metrics_dir.server_dir(tmp_path)
    parent = os.getppid()
    running = tmp_path / f"{parent}-{metrics_dir.start_time(parent)}"
    gone = tmp_path / f"{NO_SUCH_PID}-12345"
    reused = tmp_path / f"{parent}-1"  # the same pid, started at another time: another process
    unknown = tmp_path / "notes"
    for directory in (running, gone, reused, unknown):
        directory.mkdir()
        (directory / "counter_1.db").write_bytes(b"")

    metrics_dir.prepare(own)

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [own.name, running.name, unknown.name]
    )


def test_a_dead_workers_live_gauges_go_and_its_counters_stay(tmp_path):
    own = metrics_dir.server_dir(tmp_path)
    own.mkdir()
    me = os.getpid()
    for name in (
        f"gauge_livesum_{NO_SUCH_PID}.db",
        f"counter_{NO_SUCH_PID}.db",
        f"histogram_{NO_SUCH_PID}.db",
        f"gauge_livesum_{me}.db",
        f"counter_{me}.db",
    ):
        (own / name).write_bytes(b"")

    metrics_dir.prepare(own)

    assert sorted(p.name for p in own.iterdir()) == sorted(
        [
            f"counter_{NO_SUCH_PID}.db",
            f"histogram_{NO_SUCH_PID}.db",
            f"gauge_livesum_{me}.db",
            f"counter_{me}.db",
        ]
    )


def test_an_owner_is_alive_only_as_the_process_it_was():
    assert metrics_dir.start_time(NO_SUCH_PID) is None
    assert metrics_dir.start_time(os.getpid()) not in (None, "0")
    assert not metrics_dir.owner_alive(f"{NO_SUCH_PID}-1")
    assert metrics_dir.owner_alive(f"{os.getpid()}-{metrics_dir.start_time(os.getpid())}")
