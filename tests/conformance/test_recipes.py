"""The rendered targets are valid harness targets whose templates expand for every case."""

from __future__ import annotations

import json
import shlex

import pytest

from conformance.recipes import CachePaths, render, target_tables
from harness.target import Capability, Endpoint
from harness.targets.config_files import parse_target
from harness.targets.process import command_line, environment, template_values

ENDPOINT = Endpoint("openai-chat", "http://127.0.0.1:4321/v1", "sk-test")


@pytest.fixture
def tables(tmp_path):
    return target_tables(render(CachePaths(tmp_path / "cache")))


def test_rendering_leaves_no_cache_token(tmp_path) -> None:
    text = render(CachePaths(tmp_path / "cache"))
    assert "${" not in text
    assert str(tmp_path / "cache" / "venv" / "bin" / "python") in text


def test_every_target_parses(tables) -> None:
    for name, entry in tables.items():
        config = parse_target(name, entry, f"targets_template.toml: target '{name}'")
        assert config.kind in ("acp", "python")


def test_acp_agents_start_through_the_fresh_home_launcher(tables) -> None:
    for name, entry in tables.items():
        if entry["kind"] != "acp":
            continue
        argv = entry["command"]
        assert argv[1:4] == ["-m", "conformance.launch", argv[3]], name
        assert "--" in argv, name


@pytest.mark.parametrize("name", ["opencode-openai", "opencode-anthropic"])
def test_opencode_inline_config_is_json_pointing_at_the_fake_provider(tables, name) -> None:
    config = parse_target(name, tables[name], name)
    env = environment(config.env, template_values(ENDPOINT))
    inline = json.loads(env["OPENCODE_CONFIG_CONTENT"])
    provider = inline["provider"]["harness"]
    assert provider["options"]["baseURL"].startswith(ENDPOINT.base_url)
    assert provider["options"]["apiKey"] == "sk-test"
    assert inline["autoupdate"] is False


def test_every_command_and_env_template_expands(tables) -> None:
    values = template_values(ENDPOINT)
    for name, entry in tables.items():
        config = parse_target(name, entry, name)
        if config.command is not None:
            argv = command_line(config.command, values)
            assert "{" not in shlex.join(argv), name
        environment(config.env, values)  # raises on an unknown placeholder


def test_python_targets_name_the_adapters(tables) -> None:
    factories = {n: e["factory"] for n, e in tables.items() if e["kind"] == "python"}
    assert factories == {
        "pydantic-ai": "conformance.adapters.pydantic_ai:make_target",
        "openai-agents": "conformance.adapters.openai_agents:make_target",
        "langgraph": "conformance.adapters.langgraph:make_target",
    }


def test_third_party_acp_agents_claim_no_tools_or_permissions(tables) -> None:
    for name, entry in tables.items():
        config = parse_target(name, entry, name)
        claimed = config.capabilities_add | (config.capabilities or frozenset())
        assert Capability.TOOLS not in claimed and Capability.PERMISSIONS not in claimed


def test_every_acp_target_says_which_wire_formats_it_speaks(tables) -> None:
    for name, entry in tables.items():
        if entry["kind"] != "acp":
            continue
        config = parse_target(name, entry, name)
        assert config.providers, f"{name}: no providers = [...]"
    assert parse_target("gemini-cli", tables["gemini-cli"], "gemini-cli").providers == ("gemini",)


def test_every_agents_runs_match_its_targets_declared_providers(tables) -> None:
    from conformance.agents import AGENTS

    for agent in AGENTS:
        for target, kind in agent.runs:
            config = parse_target(target, tables[target], target)
            if config.providers is not None:
                assert kind in config.providers, f"{agent.name}: {target} does not speak {kind}"


@pytest.mark.parametrize("name", ["codex-acp", "qwen-code-openai", "qwen-code-anthropic"])
def test_agents_whose_load_refuses_a_fresh_session_claim_no_transcript(tables, name) -> None:
    config = parse_target(name, tables[name], name)
    assert Capability.TRANSCRIPT not in config.capabilities_add


def test_no_header_tagging_in_any_recipe(tables) -> None:
    assert "x-agent-purpose" not in json.dumps(tables).lower()
