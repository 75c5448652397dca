"""`make serve` as production runs it: static files served, uvicorn make's own child, and a
SIGTERM to make shuts uvicorn down gracefully rather than orphaning it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command

from tests.live import ROOT, GatewayProcess, free_port

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def executable(pid: int) -> str:
    return Path(f"/proc/{pid}/exe").resolve().name


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def assert_serves_static_files(base_url: str) -> None:
    css = httpx.get(f"{base_url}/static/admin/css/base.css", timeout=5)
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert "body" in css.text
    docs = httpx.get(f"{base_url}/docs", timeout=5).text
    assets = re.findall(r'(?:src|href)="(/static/ninja/[^"]+)"', docs)
    assert "/static/ninja/swagger-ui-bundle.js" in assets
    for asset in assets:
        assert httpx.get(f"{base_url}{asset}", timeout=5).status_code == 200, asset


def test_a_production_gateway_serves_the_admins_styles_and_the_docs_assets(transactional_db):
    call_command("collectstatic", interactive=False, verbosity=0)  # into its state dir
    gateway = GatewayProcess().start()
    try:
        assert_serves_static_files(gateway.base_url)
        missing = httpx.get(f"{gateway.base_url}/static/admin/css/no-such.css", timeout=5)
        assert missing.status_code == 404
        page = httpx.get(f"{gateway.base_url}/no-such-page/", timeout=5)
        assert page.status_code == 404 and "URLconf" not in page.text
    finally:
        gateway.stop()


def test_sigterm_to_make_serve_stops_uvicorn_gracefully_with_no_orphan(transactional_db, tmp_path):
    port = free_port()
    env = GatewayProcess().env()
    env.update(HOST="127.0.0.1")
    log_path = tmp_path / "make-serve.log"
    with log_path.open("wb") as log:
        # -o: the shared virtualenv is installed already and must not be reinstalled.
        make = subprocess.Popen(
            [
                "make",
                "-o",
                f"{sys.prefix}/.installed",
                "serve",
                f"VENV={sys.prefix}",
                f"PORT={port}",
                "WORKERS=2",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert make.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            try:
                if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        (server,) = children(make.pid)
        # uvicorn itself (python running it), not a shell whose command line names it.
        assert executable(server).startswith("python"), cmdline(server)
        assert "uvicorn" in cmdline(server)
        workers = children(server)
        assert workers, "uvicorn's worker processes"
        assert_serves_static_files(base_url)

        make.send_signal(signal.SIGTERM)
        make.wait(30)
        # uvicorn's children go with it; multiprocessing's resource tracker among them
        # leaves once it reads end-of-file on its pipe, a moment after uvicorn has exited.
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in [server, *workers]) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in [server, *workers]:
            assert not alive(pid), f"{cmdline(pid)} outlived make"
        log = log_path.read_text()
        assert "Shutting down" in log  # uvicorn's graceful path, not a kill
    finally:
        with contextlib.suppress(ProcessLookupError):  # what it started (its own session)
            os.killpg(make.pid, signal.SIGKILL)
        make.wait()
