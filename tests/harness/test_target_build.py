"""The one target builder: each kind wired as configured, capabilities, and the optional
`providers` / `close_within` facts on every target; kinds load lazily."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fake_providers.kinds import ProviderKind
from harness.target import Capability
from harness.targets import make_target
from harness.targets.acp import (
    REFERENCE_CAPABILITIES,
    THIRD_PARTY_CAPABILITIES,
    AcpTarget,
    reference_acp_command,
)
from harness.targets.http import DEFAULT_CAPABILITIES as HTTP_CAPABILITIES
from harness.targets.http import HttpTarget
from harness.targets.process import PROCESS_CLOSE_WITHIN
from harness.targets.pty import REFERENCE_CHAT_CAPABILITIES, PtyTarget
from harness.targets.reference import ReferenceTarget, reference_cli_args

ADAPTER = """
from harness.targets.reference import ReferenceTarget

MADE = []

def make():
    MADE.append(1)
    return ReferenceTarget()
"""


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def configure(path: Path, text: str) -> None:
    (path / "cancel-harness.toml").write_text(textwrap.dedent(text))


def test_reference_wins_and_a_configured_name_comes_next(in_tmp: Path) -> None:
    configure(
        in_tmp,
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
    assert shadow.capabilities == ReferenceTarget.capabilities - {
        Capability.TOOLS,
        Capability.COMPACTION,
    }


def test_plain_pty_and_pty_command() -> None:
    chat = make_target("pty", ("provider-ignores-cancel",))
    assert isinstance(chat, PtyTarget) and chat.capabilities == REFERENCE_CHAT_CAPABILITIES
    assert chat.command[-2:] == ["--defect", "provider-ignores-cancel"]
    assert chat.name == "pty" and chat.settings_args is not None
    custom = make_target(f"pty:{sys.executable} -m my_tui")
    assert isinstance(custom, PtyTarget)
    assert custom.command == f"{sys.executable} -m my_tui"
    assert custom.capabilities == {Capability.CANCEL}
    assert (custom.prompt_marker, custom.cancel_keys) == ("you> ", ("\x1b",))


def test_acp_kinds_are_wired_to_the_reference_door_or_the_command() -> None:
    plain = make_target("acp", ("provider-ignores-cancel",))
    assert isinstance(plain, AcpTarget)
    assert plain.command == reference_acp_command(("provider-ignores-cancel",))
    assert (plain.name, plain.capabilities) == ("acp", REFERENCE_CAPABILITIES)
    assert plain.settings_args is reference_cli_args  # scenario settings reach the agent
    mine = make_target(f"acp:{sys.executable} -m agent")
    assert isinstance(mine, AcpTarget)
    assert mine.command == f"{sys.executable} -m agent"
    assert mine.capabilities == THIRD_PARTY_CAPABILITIES  # a stranger: the conservative default
    assert mine.name == f"acp:{sys.executable} -m agent" and mine.settings_args is None


def test_http_kinds_start_the_reference_server_or_talk_to_a_url() -> None:
    for spec, url in [
        ("http", None),
        ("http:http://h:1", "http://h:1"),
        ("https://h", "https://h"),
    ]:
        made = make_target(spec)
        assert isinstance(made, HttpTarget)
        assert (made.url, made.command, made.name) == (url, None, "http")
        assert made.capabilities == HTTP_CAPABILITIES


def test_configured_fields_reach_the_target(in_tmp: Path) -> None:
    configure(
        in_tmp,
        f"""
        [targets.agent]
        kind = "acp"
        command = ["{sys.executable}", "-m", "agent"]
        env = {{ OPENAI_BASE_URL = "{{base_url}}" }}
        startup_timeout = 90
        capabilities = ["cancel", "acp"]

        [targets.tui]
        kind = "pty"
        command = "{sys.executable} -m tui"
        prompt_marker = "> "
        cancel_keys = ["ctrl-c", {{ text = "/stop" }}]
        capabilities_add = ["timeout"]

        [targets.server]
        kind = "http"
        command = "{sys.executable} -m server"
        capabilities_remove = ["transcript"]
        """,
    )
    agent = make_target("agent", ("provider-ignores-cancel",))
    assert isinstance(agent, AcpTarget)
    assert agent.command == [sys.executable, "-m", "agent"]
    assert agent.env_template == {"OPENAI_BASE_URL": "{base_url}"}
    assert agent.startup_timeout == 90.0
    assert agent.capabilities == {Capability.CANCEL, Capability.ACP}
    assert agent.name == "agent+provider-ignores-cancel"
    tui = make_target("tui")
    assert isinstance(tui, PtyTarget)
    assert (tui.prompt_marker, tui.cancel_keys) == ("> ", ("\x03", "/stop"))
    assert tui.capabilities == {Capability.CANCEL, Capability.TIMEOUT}
    server = make_target("server")
    assert isinstance(server, HttpTarget) and server.name == "server"
    assert server.capabilities == HTTP_CAPABILITIES - {Capability.TRANSCRIPT}


def test_providers_and_close_within_are_on_every_target(in_tmp: Path) -> None:
    (in_tmp / "my_adapter.py").write_text(textwrap.dedent(ADAPTER))
    kinds = {
        "reference": "",
        "acp": f"command = ['{sys.executable}']",
        "http": "url = 'http://127.0.0.1:1'",
        "pty": f"command = '{sys.executable}'",
        "python": "factory = 'my_adapter:make'",
    }
    configure(
        in_tmp,
        "".join(
            f"[targets.{kind}-x]\nkind = '{kind}'\n{extra}\n"
            "providers = ['anthropic', 'gemini']\nclose_within = 0.25\n"
            for kind, extra in kinds.items()
        ),
    )
    for kind in kinds:
        target = make_target(f"{kind}-x")
        assert getattr(target, "providers", None) == (ProviderKind.ANTHROPIC, ProviderKind.GEMINI)
        assert getattr(target, "close_within", None) == 0.25
    for spec in ("reference", "acp", "http", "pty", "python:my_adapter:make"):
        unset = make_target(spec)
        assert getattr(unset, "providers", None) is None
    # Unset, the bound is the kind's: the scenario's own in process, wider across a pipe.
    assert getattr(make_target("reference"), "close_within", None) is None
    assert getattr(make_target("python:my_adapter:make"), "close_within", None) is None
    for spec in ("acp", "http", "pty"):
        assert getattr(make_target(spec), "close_within", None) == PROCESS_CLOSE_WITHIN


def test_a_python_target_is_made_once_even_when_its_capabilities_change(in_tmp: Path) -> None:
    (in_tmp / "counting_adapter.py").write_text(textwrap.dedent(ADAPTER))
    configure(
        in_tmp,
        """
        [targets.mine]
        kind = "python"
        factory = "counting_adapter:make"
        capabilities_remove = ["tools"]
        """,
    )
    target = make_target("mine")
    assert Capability.TOOLS not in target.capabilities
    assert Capability.CANCEL in target.capabilities
    import counting_adapter  # type: ignore[import-not-found]

    assert counting_adapter.MADE == [1]


def test_listing_the_catalogue_imports_no_target_kind() -> None:
    """`cancel-harness list` stays fast: pexpect and the ACP client load only when used."""
    code = (
        "import sys; from harness import cli; cli.main(['list']); "
        "print(sorted(m for m in ('pexpect', 'acp', 'harness.targets.pty', "
        "'harness.targets.acp', 'harness.targets.http') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines()[-1] == "[]"


def test_run_uses_the_wire_formats_a_target_declares(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness import cli

    configure(in_tmp, "[targets.mine]\nkind = 'reference'\nproviders = ['anthropic']\n")
    argv = ["run", "esc.before-first-byte", "--target", "mine", "--seed", "1"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "esc.before-first-byte[anthropic]" in out or "1 passed" in out
    assert "1 case(s) against mine" in out


@pytest.mark.parametrize(
    ("argv", "jobs"),
    [
        (["run"], 4),  # the embedded agent: cases mostly wait, four share two cores
        (["run", "--target", "http"], 2),  # an agent process per case
        (["run", "--target", "acp"], 2),
        (["run", "--jobs", "1"], 1),
        (["run", "--target", "http", "--jobs", "3"], 3),
    ],
)
def test_cases_run_four_at_once_in_process_and_two_for_agent_processes(
    argv: list[str], jobs: int
) -> None:
    from harness.cli import _options, _parser
    from harness.scenario import load_catalogue

    options = _options(_parser().parse_args(argv), load_catalogue(), make_target)
    assert options.config.jobs == jobs
