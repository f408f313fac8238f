"""Target configuration in TOML, `make_target` resolution, and `run --target NAME`."""

from __future__ import annotations

import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import cli
from harness.target import Capability
from harness.targets import TargetSpecError, make_target
from harness.targets.config import load_targets
from harness.targets.pty import REFERENCE_CHAT_CAPABILITIES, PtyTarget
from harness.targets.reference import ReferenceTarget


class Recorder:
    """Stands in for AcpTarget / HttpTarget: records how it was built."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.name = kwargs.get("name") or "recorded"
        self.capabilities = kwargs.get("capabilities") or frozenset({Capability.CANCEL})


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def fake_kinds(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Stand-ins for harness.targets.acp / .http, so only our wiring is under test."""
    acp = types.ModuleType("harness.targets.acp")
    acp.AcpTarget = Recorder  # type: ignore[attr-defined]
    acp.reference_acp_command = lambda defects: ["ref-acp", *defects]  # type: ignore[attr-defined]
    acp.REFERENCE_CAPABILITIES = frozenset({Capability.ACP, Capability.TIMEOUT})  # type: ignore[attr-defined]
    acp.THIRD_PARTY_CAPABILITIES = frozenset({Capability.ACP})  # type: ignore[attr-defined]
    http = types.ModuleType("harness.targets.http")
    http.HttpTarget = Recorder  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "harness.targets.acp", acp)
    monkeypatch.setitem(sys.modules, "harness.targets.http", http)
    yield


def write(path: Path, text: str) -> None:
    path.write_text(textwrap.dedent(text))


def error_of(spec: str) -> str:
    with pytest.raises(TargetSpecError) as caught:
        make_target(spec)
    message = str(caught.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------- parsing


def test_both_files_are_read(in_tmp: Path) -> None:
    write(
        in_tmp / "cancel-harness.toml",
        f"""
        [targets.claude]
        kind = "acp"
        command = ["{sys.executable}", "-m", "some_agent"]
        env = {{ ANTHROPIC_BASE_URL = "{{base_url}}", ANTHROPIC_API_KEY = "{{api_key}}" }}
        startup_timeout = 60
        capabilities_add = ["tools"]

        [targets.tui]
        kind = "pty"
        command = "{sys.executable} -m tui_agent"
        cancel_keys = ["ctrl-c", "esc"]
        prompt_marker = "> "
        """,
    )
    write(
        in_tmp / "pyproject.toml",
        """
        [project]
        name = "mine"
        [tool.cancel-harness.targets.adapter]
        kind = "python"
        factory = "my_pkg.harness:make"
        capabilities = ["cancel", "transcript"]
        """,
    )
    targets = load_targets()
    assert sorted(targets) == ["adapter", "claude", "tui"]
    claude, tui, adapter = targets["claude"], targets["tui"], targets["adapter"]
    assert claude.command == (sys.executable, "-m", "some_agent")
    assert claude.env["ANTHROPIC_BASE_URL"] == "{base_url}"
    assert (claude.startup_timeout, claude.capabilities_add) == (
        60.0,
        frozenset({Capability.TOOLS}),
    )
    assert tui.cancel_keys == ("\x03", "\x1b") and tui.prompt_marker == "> "
    assert adapter.capabilities == frozenset({Capability.CANCEL, Capability.TRANSCRIPT})
    assert claude.where == "cancel-harness.toml: target 'claude'"


def test_no_files_no_targets() -> None:
    assert load_targets() == {}


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[targets.x\nkind=", "cancel-harness.toml: not valid TOML ("),
        ("targets = 3", "cancel-harness.toml: [targets] must be a table of [targets.NAME] tables"),
        ("[targets.x]\ncommand = 'a'", "target 'x': field 'kind' is missing; add kind = \"acp\""),
        ("[targets.x]\nkind = 'acpx'", "target 'x': field 'kind' is 'acpx'; use one of acp, http"),
        (
            "[targets.x]\nkind = 'pty'\ncomand = 'a'",
            "target 'x': unknown field 'comand' (did you mean 'command'?); kind 'pty' takes",
        ),
        (
            "[targets.x]\nkind = 'pty'\nurl = 'http://h'",
            "target 'x': field 'url' does not apply to kind 'pty'; it takes command, env",
        ),
        ("[targets.x]\nkind = 'acp'\ncommand = []", "target 'x': field 'command' is []; expected"),
        ("[targets.x]\nkind = 'acp'\nenv = { A = 1 }", "field 'env' is {'A': 1}; expected a table"),
        ("[targets.x]\nkind = 'http'\nurl = 'ftp://h'", "field 'url' is 'ftp://h'; expected an"),
        ("[targets.x]\nkind = 'acp'\nstartup_timeout = 0", "field 'startup_timeout' is 0"),
        (
            "[targets.x]\nkind = 'reference'\ncapabilities = ['cancl']",
            "field 'capabilities': unknown capability 'cancl' (did you mean 'cancel'?)",
        ),
        (
            "[targets.x]\nkind = 'reference'\ncapabilities = ['cancel']\n"
            "capabilities_remove = ['tools']",
            "give either 'capabilities' (the full set) or 'capabilities_add'",
        ),
        ("[targets.x]\nkind = 'python'", "target 'x': field 'factory' is missing"),
        (
            "[targets.x]\nkind = 'http'\nurl = 'http://h'\ncommand = 'srv'",
            "give 'url' (a server already running) or 'command' (one to start), not both",
        ),
        ("[targets.reference]\nkind = 'acp'", "the name 'reference' is built in"),
        ("[targets.x]\nkind = 'pty'\ncancel_keys = []", "field 'cancel_keys' is []; expected"),
    ],
)
def test_configuration_mistakes_name_file_target_and_field(
    in_tmp: Path, toml: str, expected: str
) -> None:
    (in_tmp / "cancel-harness.toml").write_text(toml)
    message = error_of("x")
    assert message.startswith("cancel-harness.toml: ")
    assert expected in message


def test_a_target_defined_twice_is_an_error(in_tmp: Path) -> None:
    write(in_tmp / "cancel-harness.toml", "[targets.x]\nkind = 'reference'\n")
    write(in_tmp / "pyproject.toml", "[tool.cancel-harness.targets.x]\nkind = 'reference'\n")
    assert "target 'x' is also defined in cancel-harness.toml" in error_of("x")


def test_a_missing_program_is_caught_before_running(in_tmp: Path) -> None:
    write(in_tmp / "cancel-harness.toml", "[targets.x]\nkind = 'pty'\ncommand = 'nope-xyz -i'\n")
    assert "target 'x': program 'nope-xyz' not found" in error_of("x")
    assert "target 'pty:nope-xyz': program 'nope-xyz' not found" in error_of("pty:nope-xyz")


# ------------------------------------------------------------------------- resolution


def test_reference_wins_and_a_configured_name_comes_next(in_tmp: Path) -> None:
    write(
        in_tmp / "cancel-harness.toml",
        """
        [targets.pty]
        kind = "reference"
        capabilities_remove = ["tools", "compaction"]
        """,
    )
    assert make_target("reference").name == "reference"
    shadow = make_target("pty", ("provider-ignores-cancel",))
    assert isinstance(shadow, ReferenceTarget)
    assert shadow.name == "pty+provider-ignores-cancel"
    assert Capability.TOOLS not in shadow.capabilities and Capability.CANCEL in shadow.capabilities


def test_plain_pty_and_pty_command() -> None:
    chat = make_target("pty", ("provider-ignores-cancel",))
    assert isinstance(chat, PtyTarget) and chat.capabilities == REFERENCE_CHAT_CAPABILITIES
    assert chat.command[-2:] == ["--defect", "provider-ignores-cancel"]
    custom = make_target(f"pty:{sys.executable} -m my_tui")
    assert isinstance(custom, PtyTarget)
    assert custom.command == f"{sys.executable} -m my_tui"
    assert custom.capabilities == {Capability.CANCEL}


def test_acp_and_http_kinds_are_built_lazily(fake_kinds: None, in_tmp: Path) -> None:
    plain = make_target("acp", ("provider-ignores-cancel",))
    assert isinstance(plain, Recorder)
    settings_args = plain.kwargs.pop("settings_args")
    assert callable(settings_args)  # the reference agent's door takes scenario settings
    assert plain.kwargs == {
        "command": ["ref-acp", "provider-ignores-cancel"],
        "defects": ("provider-ignores-cancel",),
        "name": "acp",
        "capabilities": frozenset({Capability.ACP, Capability.TIMEOUT}),
    }
    mine = make_target(f"acp:{sys.executable} -m agent")
    assert isinstance(mine, Recorder)
    assert mine.kwargs == {
        "command": f"{sys.executable} -m agent",
        "defects": (),
        "capabilities": frozenset({Capability.ACP}),  # a stranger: the conservative default
    }
    for spec, url in [
        ("http", None),
        ("http:http://h:1", "http://h:1"),
        ("https://h", "https://h"),
    ]:
        made = make_target(spec)
        assert isinstance(made, Recorder) and made.kwargs == {"url": url, "defects": ()}
    write(
        in_tmp / "cancel-harness.toml",
        f"""
        [targets.agent]
        kind = "acp"
        command = ["{sys.executable}", "-m", "agent"]
        env = {{ OPENAI_BASE_URL = "{{base_url}}" }}
        startup_timeout = 90
        capabilities = ["cancel", "acp"]
        """,
    )
    configured = make_target("agent")
    assert isinstance(configured, Recorder)
    assert configured.kwargs == {
        "command": [sys.executable, "-m", "agent"],
        "env": {"OPENAI_BASE_URL": "{base_url}"},
        "startup_timeout": 90.0,
        "capabilities": frozenset({Capability.CANCEL, Capability.ACP}),
        "defects": (),
        "name": "agent",
    }


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("mine", "unknown target 'mine'; use --target reference, acp[:COMMAND], http[:URL]"),
        ("ptty", "unknown target 'ptty' (did you mean 'pty'?)"),
        ("ftp:x", "unknown target 'ftp:x'"),
        ("acp:", "target 'acp:' names no COMMAND; write acp:COMMAND, or plain acp"),
        ("http:", "target 'http:' names no URL"),
        ("http:localhost", "expected an http(s) URL, such as http:http://127.0.0.1:8000"),
    ],
)
def test_unknown_and_incomplete_specs(spec: str, expected: str) -> None:
    assert expected in error_of(spec)


def test_unknown_target_lists_the_configured_names(in_tmp: Path) -> None:
    write(in_tmp / "cancel-harness.toml", "[targets.alpha]\nkind = 'reference'\n")
    assert "(configured: alpha)" in error_of("beta")


# --------------------------------------------------------------------------------- CLI


def test_run_target_name_from_cancel_harness_toml(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(in_tmp / "cancel-harness.toml", "[targets.mine]\nkind = 'reference'\n")
    argv = ["run", "esc.before-first-byte", "--provider", "openai-chat", "--target", "mine"]
    assert cli.main([*argv, "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "against mine" in out and "1 passed" in out.lower()


def test_run_unknown_target_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--target", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cancel-harness: error: unknown target 'nosuch'")
    assert err.count("\n") == 1
