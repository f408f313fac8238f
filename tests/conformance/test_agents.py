"""The suite's agent list: pinned, runnable over real provider kinds, with a recipe each."""

from __future__ import annotations

import re

import pytest

from conformance.agents import AGENTS, UnknownAgentError, select
from conformance.recipes import CachePaths, render, target_tables
from harness.scenario import ALL_KINDS

PINNED = re.compile(r"^(@?[a-z0-9@/._\[\],-]+)(==|@)\d+\.\d+\.\d+$")


def test_at_least_eight_agents_both_ecosystems() -> None:
    assert len(AGENTS) >= 8
    assert {a.ecosystem for a in AGENTS} == {"npm", "pip"}


@pytest.mark.parametrize("agent", AGENTS, ids=lambda a: a.name)
def test_every_package_is_pinned_to_one_version(agent) -> None:
    for spec in agent.packages:
        assert PINNED.match(spec), f"{agent.name}: {spec} is not pinned to an exact version"


@pytest.mark.parametrize("agent", AGENTS, ids=lambda a: a.name)
def test_every_run_has_a_recipe_and_a_kind_the_harness_knows(agent, tmp_path) -> None:
    tables = target_tables(render(CachePaths(tmp_path)))
    for target, kind in agent.runs:
        assert target in tables, f"{agent.name}: no [targets.{target}] in the template"
        assert kind in ALL_KINDS


def test_versions_read_from_the_pins() -> None:
    by_name = {a.name: a for a in AGENTS}
    assert by_name["opencode"].version == "1.18.33"
    assert by_name["claude-agent-acp"].package == "@agentclientprotocol/claude-agent-acp"
    assert by_name["pydantic-ai"].package == "pydantic-ai-slim"
    assert by_name["pydantic-ai"].version == "2.68.0"


def test_select_narrows_to_one_provider_kind() -> None:
    [qwen] = select(["qwen-code:anthropic"])
    assert qwen.runs == (("qwen-code-anthropic", "anthropic"),)
    assert [a.name for a in select([])] == [a.name for a in AGENTS]


def test_select_names_what_exists_on_a_typo() -> None:
    with pytest.raises(UnknownAgentError, match=r"unknown agent 'opencod'.*opencode"):
        select(["opencod"])
    with pytest.raises(UnknownAgentError, match="not run over 'azure'"):
        select(["gemini-cli:azure"])
