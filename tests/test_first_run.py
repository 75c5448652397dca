"""A fresh clone, `make run`, and every manage.py command the README shows, typed in a
second terminal exactly as written: no DEBUG, no SECRET_KEY in the environment."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live import free_port

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

pytestmark = pytest.mark.live


def readme_manage_commands() -> list[str]:
    """Every `.venv/bin/python manage.py ...` the README shows, in order, comments cut."""
    found = re.findall(r"\.venv/bin/python manage\.py [^`\n)]*", README)
    return [command.split("  #")[0].strip() for command in found]


def clean_env(home: Path) -> dict[str, str]:
    # What a new terminal has: no DEBUG, SECRET_KEY, DATABASE_URL or REDIS_URL.
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}


def fresh_clone(target: Path) -> Path:
    """The checkout's files (as git sees them, nothing ignored), and the shared virtualenv
    where `make run` would have created .venv."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (item.decode() for item in listed)):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(sys.prefix)
    return target


@pytest.fixture
def after_make_run(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], str, int]]:
    """`make run` in a fresh clone, serving; yields (clone, env, printed key, port)."""
    clone = fresh_clone(tmp_path / "clone")
    env = clean_env(tmp_path)
    port = free_port()
    log_path = tmp_path / "make-run.log"
    with log_path.open("wb") as log:
        # -o: the shared virtualenv is installed already and must not be reinstalled.
        make = subprocess.Popen(
            ["make", "-o", ".venv/.installed", "run", f"PORT={port}"],
            cwd=clone,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert make.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        key = re.search(r"gwk_[A-Za-z0-9_-]+", log_path.read_text()).group(0)
        yield clone, env, key, port
    finally:
        make.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            make.wait(15)
        with contextlib.suppress(ProcessLookupError):  # runserver's reloader child, if left
            os.killpg(make.pid, signal.SIGKILL)
        make.wait()


def run_in_a_terminal(command: str, *, cwd: Path, env: dict[str, str], answers: dict[str, str]):
    """Run `command` on a pseudo-terminal (createsuperuser asks its questions only on a
    TTY), answering each prompt that contains a key of `answers`. Returns (status, output)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once, nothing else in a forked pytest
        os.chdir(cwd)
        os.execve("/bin/sh", ["sh", "-c", command], env)
    output, pending = b"", list(answers.items())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
        if pending and pending[0][0].encode() in output.rsplit(b"\n", 1)[-1]:
            os.write(fd, pending.pop(0)[1].encode() + b"\n")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_the_readme_shows_the_commands_this_test_runs():
    commands = readme_manage_commands()
    assert any("createsuperuser" in command for command in commands)
    for name in ("issue_api_key", "import_gateway_config", "export_gateway_config"):
        assert any(f"manage.py {name}" in command for command in commands), name


def test_make_run_writes_a_dotenv_with_a_secret_key_once_and_keeps_it(tmp_path):
    clone = fresh_clone(tmp_path / "clone")
    env = clean_env(tmp_path)
    subprocess.run(["make", ".env"], cwd=clone, env=env, check=True, capture_output=True)
    first = (clone / ".env").read_text()
    secret = re.search(r"^SECRET_KEY=(\S+)$", first, re.MULTILINE).group(1)
    assert len(secret) >= 50
    assert "DEBUG" not in first  # make serve and docker compose read .env too
    assert (clone / ".env").stat().st_mode & 0o077 == 0  # a secret: owner only
    subprocess.run(["make", ".env"], cwd=clone, env=env, check=True, capture_output=True)
    assert (clone / ".env").read_text() == first


def test_every_readme_command_works_as_written_after_make_run(after_make_run):
    clone, env, _key, _port = after_make_run
    for command in readme_manage_commands():
        if "createsuperuser" in command:
            asked = {} if "--username" in command else {"Username": "ops"}
            if "--email" not in command:
                asked["Email address"] = "ops@example.com"
            status, output = run_in_a_terminal(
                command,
                cwd=clone,
                env=env,
                answers={
                    **asked,
                    "Password:": "a long pass phrase 4 tests",
                    "Password (again)": "a long pass phrase 4 tests",
                },
            )
            assert status == 0, output
            assert "Superuser created successfully" in output
            continue
        result = subprocess.run(
            ["sh", "-c", command], cwd=clone, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        if "issue_api_key" in command:
            assert result.stdout.strip().startswith("gwk_")
        if "management_token_issue" in command:
            assert result.stdout.strip().startswith("gwm_")
    exported = (clone / "gateway.yaml").read_text()
    assert "slug: acme" in exported and "slug: demo" in exported


def test_the_readme_python_example_runs_against_make_run(after_make_run):
    clone, env, key, port = after_make_run
    example = re.search(r"```python\n(.*?)```", README, re.DOTALL).group(1)
    example = example.replace("gwk_...", key).replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    result = subprocess.run(
        [".venv/bin/python", "-c", example],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "ChatCompletion(" in result.stdout
