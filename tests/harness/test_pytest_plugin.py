"""The pytest plugin as a project uses it to gate CI with plain `pytest`."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

HERE = str(Path(__file__).parent)
# Inner runs skip hypothesis' plugin (0.7 s of start-up each) and the cache.
QUIET = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")

CONFTEST = f"""
import sys
sys.path.insert(0, {HERE!r})
from tiny_agent import TinyAgent, example_registry
from harness.scenario import ScenarioContext

def pytest_cancel_harness_make_target(spec, defects):
    return TinyAgent(ignore_cancel="provider-ignores-cancel" in defects)

def pytest_cancel_harness_catalogue(config):
    registry = example_registry()

    @registry.scenario(id="compaction.esc", title="t", incident="I1", requires={{"compaction"}})
    async def compaction_esc(ctx: ScenarioContext) -> None:
        '''Esc during compaction is ignored.'''

    return registry
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    return pytester


def test_catalogue_cases_parametrise_a_plain_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        f"""
        import sys
        sys.path.insert(0, {HERE!r})
        import pytest
        from tiny_agent import TinyAgent, example_registry
        from harness.pytest_plugin import catalogue_cases

        good = catalogue_cases(registry=example_registry(), target_factory=TinyAgent, seed=9)
        bad = catalogue_cases(
            ["esc.*"],
            providers=["openai-chat"],
            registry=example_registry(),
            target_factory=lambda: TinyAgent(ignore_cancel=True),
            seed=9,
        )

        @pytest.mark.parametrize("case", good)
        def test_cancellation(case):
            case.run()

        @pytest.mark.parametrize("case", bad)
        def test_buggy_agent(case):
            case.run()
        """
    )
    result = pytester.runpytest("-v", *QUIET)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_cancellation?esc.closes-stream?openai-chat?? PASSED*",
            "*test_buggy_agent?esc.closes-stream?openai-chat?? FAILED*",
            "*esc.closes-stream[[]openai-chat[]] failed: expected the client to close the provider"
            " connection within 60 ms of the cancel at +*",
            "replay: pytest '*.py::test_buggy_agent[[]esc.closes-stream[[]openai-chat[]][]]' "
            "--cancel-harness-seed 9 --cancel-harness-tempo 0.02",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    # Run as printed, the replay tests the same (buggy) agent again: it fails again.
    again = pytester.runpytest(*replay_args(result), *QUIET)
    again.assert_outcomes(failed=1)


def replay_args(result: pytest.RunResult) -> list[str]:
    """The arguments of the replay line a failure printed (after `pytest`)."""
    match = re.search(r"^replay: (pytest .*)$", result.stdout.str(), re.MULTILINE)
    assert match is not None, result.stdout.str()
    return shlex.split(match.group(1))[1:]


def test_option_collects_the_catalogue_as_items(project: pytest.Pytester) -> None:
    result = project.runpytest(
        "--cancel-harness", "--cancel-harness-seed", "4", "-v", "-rs", *QUIET
    )
    result.assert_outcomes(passed=3, skipped=5)  # compaction.esc on each of 5 kinds
    result.stdout.fnmatch_lines(
        [
            "cancel-harness: target reference, seed 4, tempo 0.02",
            "*cancel-harness::esc.closes-stream[[]anthropic[]] PASSED*",
            "*cancel-harness::timeout.no-ghost[[]openai-chat[]] PASSED*",
            "SKIPPED * not applicable: needs capability compaction, which target 'tiny' does not"
            " have",
        ]
    )


def test_option_honours_k_and_defects(project: pytest.Pytester) -> None:
    result = project.runpytest(
        "--cancel-harness",
        "--cancel-harness-provider",
        "anthropic",
        "--cancel-harness-defect",
        "provider-ignores-cancel",
        "--cancel-harness-seed",
        "4",
        "-k",
        "closes",
        *QUIET,
    )
    result.assert_outcomes(failed=1, deselected=1)
    result.stdout.fnmatch_lines(
        [
            "replay: pytest --cancel-harness --cancel-harness-select esc.closes-stream "
            "--cancel-harness-provider anthropic -k 'esc.closes-stream[[]anthropic[]]' "
            "--cancel-harness-seed 4 --cancel-harness-tempo 0.02 "
            "--cancel-harness-defect provider-ignores-cancel"
        ]
    )
    # The conftest's agent, with the defect, fails again when the replay runs as printed.
    project.runpytest(*replay_args(result), *QUIET).assert_outcomes(failed=1)


def test_bad_options_are_a_usage_error(project: pytest.Pytester) -> None:
    result = project.runpytest("--cancel-harness", "--cancel-harness-provider", "gemeni", *QUIET)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*cancel-harness: unknown provider 'gemeni'; use one of*"])


def test_fixtures_give_a_provider_and_the_configured_target(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import httpx
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        async def test_provider(fake_provider):
            async with httpx.AsyncClient() as client:
                url = fake_provider.url("openai") + "/chat/completions"
                body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
                response = await client.post(url, json=body)
            assert response.status_code == 200
            assert fake_provider.ledger.requests()[0].path == "/v1/chat/completions"

        def test_target(cancel_harness_target):
            agent = cancel_harness_target(defects=["provider-ignores-cancel"])
            assert agent.name == "tiny" and agent.ignore_cancel
        """
    )
    project.runpytest(*QUIET).assert_outcomes(passed=2)


def test_plugin_is_inert_when_unused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest(*QUIET)
    result.assert_outcomes(passed=1)
    assert "cancel-harness:" not in result.stdout.str()  # no header, no items
    listed = pytester.runpytest("--collect-only", "-q", *QUIET)
    assert [line for line in listed.stdout.lines if "::" in line] == [
        "test_plugin_is_inert_when_unused.py::test_plain"
    ]
