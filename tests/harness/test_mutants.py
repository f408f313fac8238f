"""The proof matrix cannot be fooled: catches must repeat; doors a defect cannot reach say so."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from tiny_agent import example_registry

from harness import html, mutants
from harness.cases import Case, CaseResult, RunConfig, RunResult, Status, plan_cases
from reference_agent.defects import Defect

REGISTRY = example_registry()
CASES = plan_cases(list(REGISTRY), ["openai-chat"])  # esc.closes-stream, timeout.no-ghost
ESC, GHOST = (c.name for c in CASES)
P, F, NA, IND = Status.PASSED, Status.FAILED, Status.NOT_APPLICABLE, Status.INDETERMINATE


class Script:
    """A stand-in for running the catalogue: each (defect, case) ends as scripted, run by run."""

    def __init__(self, plan: dict[tuple[str, str], list[Status]]) -> None:
        self.plan = plan
        self.calls: dict[tuple[str, str], int] = defaultdict(int)

    def __call__(self, config: RunConfig, cases: Sequence[Case]) -> RunResult:
        run = RunResult(config, config.target, "now")
        defect = config.defects[0] if config.defects else ""
        for case in cases:
            key = (defect, case.name)
            statuses = self.plan.get(key, [P])
            status = statuses[min(self.calls[key], len(statuses) - 1)]
            self.calls[key] += 1
            run.results.append(
                CaseResult(
                    case.spec.id,
                    case.kind,
                    case.spec.incident,
                    case.spec.title,
                    status,
                    0.1,
                    "boom" if status is F else "",
                    "",
                    config.replay(case.spec.id, case.kind),
                    case.spec.catches,
                )
            )
        return run


def prove(script: Script, defects: list[str], target: str = "reference") -> dict[str, Any]:
    return mutants.prove(script, CASES, RunConfig(seed=3, target=target), defects, reruns=2)


def test_a_catch_must_fail_in_every_run_and_a_flaky_cell_is_not_counted() -> None:
    script = Script(
        {
            ("provider-ignores-cancel", ESC): [F, F, F],
            ("commit-after-timeout", GHOST): [F, P, F],  # fooled once: flaky, not a catch
        }
    )
    matrix = prove(script, ["provider-ignores-cancel", "commit-after-timeout"])
    assert script.calls[("provider-ignores-cancel", ESC)] == 3
    assert script.calls[("provider-ignores-cancel", GHOST)] == 1  # passed: not re-run
    rows = matrix["defects"]
    assert rows["provider-ignores-cancel"]["caught_by"] == [f"{ESC} 3/3"]
    assert rows["commit-after-timeout"]["status"] == "not-caught"
    assert rows["commit-after-timeout"]["flaky"] == [f"{GHOST} 2/3"]
    assert matrix["uncaught"] == ["commit-after-timeout"] and matrix["ok"] is False
    text = mutants.render(matrix)
    assert f"provider-ignores-cancel  1: {ESC} 3/3" in text
    assert "commit-after-timeout     NOT CAUGHT" in text
    assert f"flaky, not counted: {GHOST} 2/3" in text
    assert text.endswith("1 defect(s) caught by no scenario")


def test_the_clean_agent_runs_the_same_way_and_must_pass() -> None:
    script = Script({("", ESC): [F, P, P], ("provider-ignores-cancel", ESC): [F, F, F]})
    matrix = prove(script, ["provider-ignores-cancel"])
    clean = matrix["clean"]
    assert clean["ok"] is False and clean["failing"] == [f"{ESC} 1/3 flaky"]
    assert matrix["ok"] is False
    text = mutants.render(matrix)
    assert text.startswith(f"clean agent did not pass 1: {ESC} 1/3 flaky\n  {ESC}: boom")


def test_the_failures_behind_the_matrix_are_kept_for_the_page() -> None:
    script = Script({("", ESC): [F, P, P], ("provider-ignores-cancel", ESC): [F, F, F]})
    kept: list[tuple[str, CaseResult]] = []
    matrix = mutants.prove(
        script,
        CASES,
        RunConfig(seed=3, target="reference"),
        ["provider-ignores-cancel", "commit-after-timeout"],
        reruns=2,
        evidence=lambda row, result: kept.append((row, result)),
    )
    assert [(row, r.name, r.status) for row, r in kept] == [
        ("clean", ESC, F),
        ("provider-ignores-cancel", ESC, F),
    ]  # commit-after-timeout was not caught: nothing to show for it
    page = html.mutants_page(matrix, kept)
    assert "Clean agent: did not pass (1)" in page
    assert page.count('<section class="case') == 2 and "id='caught-provider-ignores-cancel'" in page


def test_a_defect_behind_another_door_is_not_applicable_and_not_run() -> None:
    script = Script({("provider-ignores-cancel", ESC): [F, F, F]})
    defects = ["provider-ignores-cancel", "acp-wrong-stop-reason", "handoff-window"]
    matrix = prove(script, defects, target="http")
    rows = matrix["defects"]
    assert rows["acp-wrong-stop-reason"]["status"] == "not-applicable"
    assert rows["handoff-window"]["status"] == "not-applicable"
    assert not any(d == "acp-wrong-stop-reason" for d, _ in script.calls)
    assert matrix["ok"] is True
    text = mutants.render(matrix)
    assert "acp-wrong-stop-reason    not applicable through http (lives behind acp)" in text
    assert "handoff-window           not applicable through http (lives behind reference)" in text
    assert text.endswith("every applicable defect caught (2 not applicable through http)")


def test_nothing_applicable_prints_neither_passed_nor_not_caught() -> None:
    script = Script({(d, c.name): [NA] for d in ("", "tool-survives-cancel") for c in CASES})
    matrix = prove(script, ["tool-survives-cancel"], target="acp")
    text = mutants.render(matrix)
    assert "passed" not in text.replace("did not pass", "") and "NOT CAUGHT" not in text
    assert text.splitlines()[0] == "clean agent: no case applicable through this target"
    assert "tool-survives-cancel  no case that claims it applies through this target" in text
    assert matrix["ok"] is True


def test_a_defect_no_applicable_case_claims_is_not_judged_through_that_door() -> None:
    # Through HTTP the tool scenario is not applicable (no tools capability): the cases that
    # run all pass with tool-survives-cancel on, and none of them is about it.
    matrix = prove(Script({}), ["tool-survives-cancel", "provider-ignores-cancel"], "http")
    rows = matrix["defects"]
    assert rows["tool-survives-cancel"]["status"] == "nothing-applicable"
    assert rows["provider-ignores-cancel"]["status"] == "not-caught"  # claimed, and missed
    text = mutants.render(matrix)
    assert "tool-survives-cancel     no case that claims it applies through this target" in text
    assert "provider-ignores-cancel  NOT CAUGHT" in text


def test_an_indeterminate_cell_is_neither_caught_nor_missed_silently() -> None:
    script = Script({("provider-ignores-cancel", ESC): [IND]})
    matrix = prove(script, ["provider-ignores-cancel"])
    text = mutants.render(matrix)
    assert f"indeterminate: {ESC}" in text and "NOT CAUGHT" in text


def test_every_defect_has_a_door_and_only_known_doors() -> None:
    for defect in Defect:
        assert mutants.doors(defect.value) <= set(mutants.DOORS)
        assert mutants.doors(defect.value)
    with pytest.raises(mutants.MutantsTargetError, match="one of its doors: reference, acp"):
        mutants.check_door("acp:cat")


def test_the_matrix_is_written_as_json(tmp_path: Path) -> None:
    script = Script({("provider-ignores-cancel", ESC): [F, F, F]})
    matrix = prove(script, ["provider-ignores-cancel"])
    path = mutants.write(matrix, tmp_path / "deep" / "mutants.json")
    assert '"verdict": "caught"' in path.read_text()
