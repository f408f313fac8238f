"""Each agent process gets a fresh, seeded home: it never reads the user's config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.launch import LaunchError, home_environment, parse_args, seed_home

ROOT = Path(__file__).resolve().parents[2]


def test_seeds_are_rendered_with_the_case_endpoint(tmp_path) -> None:
    env = {"CONFORMANCE_BASE_URL": "http://127.0.0.1:999/v1"}
    written = seed_home("codex-acp", tmp_path, env)
    config = (tmp_path / ".codex" / "config.toml").read_text()
    assert tmp_path / ".codex" / "config.toml" in written
    assert 'base_url = "http://127.0.0.1:999/v1"' in config
    assert "@BASE_URL@" not in config


def test_every_config_and_state_dir_points_into_the_home(tmp_path) -> None:
    env = home_environment(tmp_path, {"HOME": "/root", "PATH": "/bin", "SSL_CERT_FILE": ""})
    for name in (
        "HOME",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "XDG_STATE_HOME",
        "XDG_CACHE_HOME",
        "CLAUDE_CONFIG_DIR",
        "CODEX_HOME",
    ):
        assert env[name].startswith(str(tmp_path)), name
    assert "SSL_CERT_FILE" not in env  # an empty CA path (no --tls) would break TLS setup


def test_node_22_goes_first_on_the_path(tmp_path) -> None:
    env = home_environment(tmp_path, {"PATH": "/usr/bin", "CONFORMANCE_NODE_BIN": "/n/bin"})
    assert env["PATH"].split(os.pathsep)[:2] == ["/n/bin", "/usr/bin"]


def test_a_wrong_call_says_how_to_call_it() -> None:
    with pytest.raises(LaunchError, match=r"usage: python -m conformance\.launch AGENT -- COMMAND"):
        parse_args(["gemini-cli", "gemini"])


def test_the_agent_runs_in_a_new_home_under_the_cache(tmp_path) -> None:
    env = dict(os.environ, CONFORMANCE_CACHE=str(tmp_path), PYTHONPATH=str(ROOT))
    script = 'echo "$HOME"; cat "$HOME/.gemini/settings.json"'
    done = subprocess.run(
        [sys.executable, "-m", "conformance.launch", "gemini-cli", "--", "sh", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    home, _, settings = done.stdout.partition("\n")
    assert Path(home).parent == tmp_path / "homes" / "gemini-cli"
    assert json.loads(settings)["privacy"]["usageStatisticsEnabled"] is False


def test_without_a_cache_it_refuses_with_one_line(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CONFORMANCE_CACHE"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "conformance.launch", "x", "--", "true"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 2
    assert "CONFORMANCE_CACHE is not set" in done.stderr
