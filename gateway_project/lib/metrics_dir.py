"""Where each server's Prometheus files live: one directory per running server.

prometheus-client's multiprocess mode has every process write its counters to files named
by its pid in PROMETHEUS_MULTIPROC_DIR, and a scrape sums every file there. The variable
is read when prometheus_client is imported, so the settings set it (`claim`), before any
app module is loaded.

The files of a server that has stopped must not count in the next one (its counters would
start where the old ones ended), yet the files of a worker that died while its server
runs must stay (uvicorn starts another one: the sums must not go down). uvicorn's master
never loads the application, so it has no hook to clear the directory at start. Instead
each server gets its own subdirectory, named for the process that owns the server and
for that process's start time (a pid alone is reused: a container's server is pid 1 at
every start):

- under uvicorn with several workers, the master (every worker's parent);
- otherwise the serving process itself (`uvicorn` with one worker, `runserver`'s child,
  a management command, a test run).

`prepare` (called once per process, when the metrics are first loaded) removes the
directories of owners that are gone, and marks the workers of its own server that died
(`mark_process_dead`: their live gauges stop counting; their counters stay).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


_HAS_PROC = Path("/proc/self/stat").exists()


def start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, from /proc); None when it does
    not exist or has exited (a zombie); "0" on a system without /proc."""
    if not _HAS_PROC:
        return "0" if pid_alive(pid) else None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def pid_alive(pid: int) -> bool:
    if _HAS_PROC:
        return start_time(pid) is not None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_alive(name: str) -> bool:
    """Whether the owner a directory is named for ("<pid>-<start>") still runs: the same
    pid started at another time is another process."""
    pid_text, _, started = name.partition("-")
    if not pid_text.isdigit():
        return True  # not one of ours: leave it alone
    return start_time(int(pid_text)) == started


def owner_pid() -> int:
    """The process whose server this process serves (see the module's docstring)."""
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None and parent.pid is not None else os.getpid()


def server_dir(base: Path) -> Path:
    pid = owner_pid()
    return base / f"{pid}-{start_time(pid) or '0'}"


def claim(base: Path) -> Path:
    """Point prometheus-client at this server's directory (whatever the environment
    inherited: a test run's or a reloader's value is not ours); returns it."""
    path = server_dir(base)
    os.environ[ENV] = str(path)
    return path


def prepare(path: Path) -> None:
    """Create the directory, drop those of servers that are gone, and mark this server's
    dead workers. Never raises: metrics must not stop a worker from starting."""
    with contextlib.suppress(OSError):
        path.mkdir(parents=True, exist_ok=True)
        for sibling in path.parent.iterdir():
            if sibling != path and sibling.is_dir() and not owner_alive(sibling.name):
                shutil.rmtree(sibling, ignore_errors=True)
        for pid in dead_worker_pids(path):
            mark_dead(pid, path)


def dead_worker_pids(path: Path) -> set[int]:
    """Pids that wrote files in `path` and are no longer running."""
    pids = set()
    for file in path.glob("*.db"):
        pid_text = file.stem.rsplit("_", 1)[-1]
        if pid_text.isdigit():
            pids.add(int(pid_text))
    return {pid for pid in pids if not pid_alive(pid)}


def mark_dead(pid: int, path: Path) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(path))
