"""Target configuration: TOML and `--target SPEC` become one checked `TargetConfig`, and
every mistake is one line, found before any case runs."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from fake_providers.kinds import ProviderKind
from harness import cli
from harness.target import Capability, Endpoint
from harness.targets import TargetConfig, TargetKind, TargetSpecError, make_target, resolve_target
from harness.targets.config import PLACEHOLDERS
from harness.targets.config_files import load_targets
from harness.targets.process import command_line, template_values


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


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
        providers = ["anthropic"]
        close_within = 0.5

        [targets.tui]
        kind = "pty"
        command = "{sys.executable} -m tui_agent"
        cancel_keys = ["ctrl-c", "Esc", {{ text = "/stop" }}, "enter"]
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
        providers = ["openai", "gemini", "openai-chat"]
        """,
    )
    targets = load_targets()
    assert sorted(targets) == ["adapter", "claude", "tui"]
    claude, tui, adapter = targets["claude"], targets["tui"], targets["adapter"]
    assert claude.kind is TargetKind.ACP and claude.name == "claude"
    assert claude.command == (sys.executable, "-m", "some_agent")
    assert claude.env["ANTHROPIC_BASE_URL"] == "{base_url}"
    assert (claude.startup_timeout, claude.capabilities_add) == (60.0, {Capability.TOOLS})
    assert (claude.providers, claude.close_within) == ((ProviderKind.ANTHROPIC,), 0.5)
    assert tui.cancel_keys == ("\x03", "\x1b", "/stop", "\r") and tui.prompt_marker == "> "
    assert adapter.capabilities == frozenset({Capability.CANCEL, Capability.TRANSCRIPT})
    assert adapter.providers == (ProviderKind.OPENAI_CHAT, ProviderKind.GEMINI)  # alias, once
    assert claude.where == "cancel-harness.toml: target 'claude'"


def test_no_files_no_targets() -> None:
    assert load_targets() == {}


def test_a_spec_and_a_toml_table_become_the_same_config(in_tmp: Path) -> None:
    command = f"{sys.executable} -m agent --acp"
    write(in_tmp / "cancel-harness.toml", f"[targets.mine]\nkind = 'acp'\ncommand = '{command}'\n")
    from_spec, from_toml = resolve_target(f"acp:{command}"), resolve_target("mine")
    assert from_spec == TargetConfig(TargetKind.ACP, f"target 'acp:{command}'", command=command)
    assert (from_toml.kind, from_toml.command, from_toml.name) == (TargetKind.ACP, command, "mine")
    assert resolve_target("reference").kind is TargetKind.REFERENCE
    assert (
        resolve_target("https://h:1").url == resolve_target("http:https://h:1").url == "https://h:1"
    )
    assert resolve_target("python:pkg.mod:make").factory == "pkg.mod:make"
    assert resolve_target("pty").command is None  # plain: the reference agent's door


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
            "[targets.x]\nkind = 'acp'\nstartup_timeout = 3600",
            "field 'startup_timeout' is 3600; expected seconds above 0 and at most 600, such as 30",
        ),
        ("[targets.x]\nkind = 'acp'\nstartup_timeout = nan", "field 'startup_timeout' is nan"),
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
        (
            "[targets.x]\nkind = 'reference'\nproviders = ['antropic']",
            "field 'providers': unknown provider 'antropic' (did you mean 'anthropic'?)",
        ),
        ("[targets.x]\nkind = 'reference'\nproviders = []", "field 'providers' is []; expected"),
        (
            "[targets.x]\nkind = 'reference'\nclose_within = 30",
            "field 'close_within' is 30; expected seconds above 0 and at most 10, such as 0.5",
        ),
    ],
)
def test_configuration_mistakes_name_file_target_and_field(
    in_tmp: Path, toml: str, expected: str
) -> None:
    (in_tmp / "cancel-harness.toml").write_text(toml)
    message = error_of("x")
    assert message.startswith("cancel-harness.toml: ")
    assert expected in message


@pytest.mark.parametrize(
    ("file", "toml", "expected"),
    [
        (
            "cancel-harness.toml",
            "[target.x]\nkind = 'reference'\n",
            "cancel-harness.toml: [target.x] is never read; write [targets.x] "
            "(targets live in [targets.NAME])",
        ),
        (
            "cancel-harness.toml",
            "[targets.y]\nkind = 'reference'\n[target.x]\nkind = 'reference'\n",
            "[target.x] is never read; write [targets.x]",
        ),
        (
            "pyproject.toml",
            "[tool.cancel_harness.targets.x]\nkind = 'reference'\n",
            "pyproject.toml: [tool.cancel_harness.targets] is never read; "
            "write [tool.cancel-harness.targets]",
        ),
        (
            "pyproject.toml",
            "[tool.cancel-harness.target.x]\nkind = 'reference'\n",
            "[tool.cancel-harness.target.x] is never read; write [tool.cancel-harness.targets.x]",
        ),
    ],
)
def test_a_misspelt_section_is_an_error_not_silence(
    in_tmp: Path, file: str, toml: str, expected: str
) -> None:
    (in_tmp / file).write_text(toml)
    assert expected in error_of("x")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            "command = ['agent', '--url', '{base_urll}']",
            "command: unknown placeholder {base_urll} (did you mean '{base_url}'?) in "
            "'{base_urll}'; known: {base_url}, {api_key}, {ca_file}, {provider}; write {{ and }}",
        ),
        ("command = 'agent --key {apikey}'", "unknown placeholder {apikey} (did you mean"),
        ("env = { KEY = '{api_key' }", "env KEY: '{api_key' has an unmatched brace; write {{"),
        ("env = { CA = '{ca_file!r}' }", "placeholder {ca_file} takes no format"),
        ("command = 'agent {}'", "unknown placeholder {} in '{}'"),
    ],
)
def test_placeholders_are_checked_at_load_time(in_tmp: Path, fields: str, expected: str) -> None:
    write(in_tmp / "cancel-harness.toml", f"[targets.x]\nkind = 'acp'\n{fields}\n")
    with pytest.raises(TargetSpecError) as caught:
        load_targets()
    assert "cancel-harness.toml: target 'x': " in str(caught.value)
    assert expected in str(caught.value)


def test_a_spec_command_is_checked_like_a_configured_one() -> None:
    assert "target 'acp:agent {bse_url}': command: unknown placeholder {bse_url}" in error_of(
        "acp:agent {bse_url}"
    )


def test_placeholders_are_not_filled_in_a_url(in_tmp: Path) -> None:
    write(in_tmp / "cancel-harness.toml", "[targets.x]\nkind = 'http'\nurl = 'http://{host}:1'\n")
    assert "placeholders are not filled in a url" in error_of("x")


def test_double_braces_are_literal_braces_in_the_agent_command(in_tmp: Path) -> None:
    write(
        in_tmp / "cancel-harness.toml",
        """
        [targets.x]
        kind = "acp"
        command = ["node", "-e", "run({{ url: '{base_url}' }})"]
        env = { SETTINGS = '{{"key": "{api_key}"}}' }
        """,
    )
    config = load_targets()["x"]
    values = template_values(Endpoint("anthropic", "http://127.0.0.1:9", api_key="k"))
    assert set(values) == set(PLACEHOLDERS)
    assert config.command is not None
    assert command_line(config.command, values)[-1] == "run({ url: 'http://127.0.0.1:9' })"
    assert config.env["SETTINGS"].format_map(values) == '{"key": "k"}'


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("['escc']", "field 'cancel_keys': unknown key 'escc' (did you mean 'esc'?); use key"),
        ("['ctrl-cc']", "unknown key 'ctrl-cc' (did you mean 'ctrl-c'?)"),
        ("[{ txt = 'x' }]", "{'txt': 'x'} is neither a key name nor { text = \"...\" }"),
        ("[{ text = '' }]", '{ text = "" } sends nothing'),
    ],
)
def test_cancel_keys_are_names_or_explicit_text(in_tmp: Path, keys: str, expected: str) -> None:
    write(in_tmp / "cancel-harness.toml", f"[targets.x]\nkind = 'pty'\ncancel_keys = {keys}\n")
    assert expected in error_of("x")


def test_a_target_defined_twice_is_an_error(in_tmp: Path) -> None:
    write(in_tmp / "cancel-harness.toml", "[targets.x]\nkind = 'reference'\n")
    write(in_tmp / "pyproject.toml", "[tool.cancel-harness.targets.x]\nkind = 'reference'\n")
    assert "target 'x' is also defined in cancel-harness.toml" in error_of("x")


def test_a_missing_program_is_caught_before_running(in_tmp: Path) -> None:
    write(in_tmp / "cancel-harness.toml", "[targets.x]\nkind = 'pty'\ncommand = 'nope-xyz -i'\n")
    assert "target 'x': program 'nope-xyz' not found" in error_of("x")
    assert "target 'pty:nope-xyz': program 'nope-xyz' not found" in error_of("pty:nope-xyz")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("mine", "unknown target 'mine'; use --target reference, acp[:COMMAND], http[:URL]"),
        ("ptty", "unknown target 'ptty' (did you mean 'pty'?)"),
        ("ftp:x", "unknown target 'ftp:x'"),
        ("acp:", "target 'acp:' names no COMMAND; write acp:COMMAND, or plain acp"),
        ("http:", "target 'http:' names no URL"),
        ("http:localhost", "expected an http(s) URL, such as http:http://127.0.0.1:8000"),
        ("acp:'unclosed", 'cannot parse the command "\'unclosed"'),
    ],
)
def test_unknown_and_incomplete_specs(spec: str, expected: str) -> None:
    assert expected in error_of(spec)


def test_unknown_target_lists_the_configured_names(in_tmp: Path) -> None:
    write(in_tmp / "cancel-harness.toml", "[targets.alpha]\nkind = 'reference'\n")
    assert "(configured: alpha)" in error_of("beta")


def test_a_broken_file_does_not_matter_to_a_spec_that_needs_no_name(in_tmp: Path) -> None:
    write(in_tmp / "cancel-harness.toml", "[targets.x]\nkind = 'nope'\n")
    assert make_target("reference").name == "reference"
    assert "unknown target 'ftp:x'" in error_of("ftp:x")


# --------------------------------------------------------------------------------- CLI


def test_run_target_name_from_cancel_harness_toml(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(in_tmp / "cancel-harness.toml", "[targets.mine]\nkind = 'reference'\n")
    argv = ["run", "esc.before-first-byte", "--provider", "openai-chat", "--target", "mine"]
    assert cli.main([*argv, "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "against mine" in out and "1 passed" in out.lower()


@pytest.mark.parametrize(
    "toml",
    [
        "[target.mine]\nkind = 'reference'\n",
        "[targets.mine]\nkind = 'pty'\ncancel_keys = ['escc']\n",
        "[targets.mine]\nkind = 'acp'\ncommand = 'agent {base_urll}'\n",
    ],
    ids=["singular-section", "key-typo", "placeholder-typo"],
)
def test_config_mistakes_exit_2_with_one_line_before_any_case_runs(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], toml: str
) -> None:
    (in_tmp / "cancel-harness.toml").write_text(toml)
    assert cli.main(["run", "--target", "mine", "--provider", "openai-chat"]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # nothing ran
    assert err.startswith("cancel-harness: error: cancel-harness.toml: ")
    assert err.count("\n") == 1


def test_run_unknown_target_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--target", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cancel-harness: error: unknown target 'nosuch'")
    assert err.count("\n") == 1
