"""The .env reader settings use: docker compose's format, under the real environment."""

from __future__ import annotations

import os

import pytest

from gateway_project.lib.env import dotenv_load, dotenv_read


def test_it_reads_names_values_quotes_and_comments(tmp_path):
    path = tmp_path / ".env"
    path.write_text(
        "# a comment\n"
        "\n"
        "SECRET_KEY=abc=def\n"
        "export REDIS_URL=redis://127.0.0.1:6379/0\n"
        'QUOTED="two words # not a comment"\n'
        "SINGLE='x'\n"
        "TRAILING=1 # a comment\n"
        "EMPTY=\n"
    )
    assert dotenv_read(path) == {
        "SECRET_KEY": "abc=def",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "QUOTED": "two words # not a comment",
        "SINGLE": "x",
        "TRAILING": "1",
        "EMPTY": "",
    }


def test_a_missing_file_reads_as_empty(tmp_path):
    assert dotenv_read(tmp_path / "nothing-here") == {}


def test_it_rejects_a_line_that_is_not_name_equals_value(tmp_path):
    path = tmp_path / ".env"
    path.write_text("SECRET_KEY=ok\nthis is not a setting\n")
    with pytest.raises(ValueError, match=r"\.env:2: expected NAME=value"):
        dotenv_read(path)


def test_the_real_environment_wins_over_the_file(tmp_path, monkeypatch):
    path = tmp_path / ".env"
    path.write_text("GW_TEST_SET=from-file\nGW_TEST_UNSET=from-file\nGW_TEST_EMPTY=from-file\n")
    monkeypatch.setenv("GW_TEST_SET", "from-env")
    monkeypatch.setenv("GW_TEST_EMPTY", "")
    monkeypatch.delenv("GW_TEST_UNSET", raising=False)
    dotenv_load(path)
    try:
        assert os.environ["GW_TEST_SET"] == "from-env"
        assert os.environ["GW_TEST_EMPTY"] == ""
        assert os.environ["GW_TEST_UNSET"] == "from-file"
    finally:
        os.environ.pop("GW_TEST_UNSET", None)


def test_tests_do_not_read_the_checkouts_env_file(settings):
    # A developer's .env (REDIS_URL, DEBUG...) must not change what the tests see, nor
    # what the gateway processes they start see: those inherit this variable.
    assert settings.GATEWAY_ENV_FILE == ""
    assert os.environ["GATEWAY_ENV_FILE"] == ""
