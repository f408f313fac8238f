"""Reports of a run: JUnit XML for CI, results.json for tools, a table and details for people.

Written to reports/latest/ by default. The mutants report shows which scenarios caught
which defect: the proof that every scenario, and the catalogue as a whole, has teeth.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.cases import CaseResult, RunResult, Status

DEFAULT_DIR = Path("reports/latest")
_XML_INVALID = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    return _XML_INVALID.sub("?", text)


def _details(result: CaseResult) -> str:
    parts = [result.message, "", "timeline:", result.timeline, "", f"replay: {result.replay}"]
    return _clean("\n".join(parts))


def _run_seconds(run: RunResult) -> float:
    return run.wall_seconds or sum(r.duration for r in run.results)


def junit_xml(run: RunResult) -> str:
    """One testcase per case; failures and errors carry the message, timeline and replay."""
    counts = {
        "tests": str(len(run.results)),
        "failures": str(run.count(Status.FAILED)),
        "errors": str(run.count(Status.ERROR)),
        "skipped": str(run.count(Status.NOT_APPLICABLE)),
        "time": f"{_run_seconds(run):.3f}",
    }
    root = ET.Element("testsuites", {"name": "cancel-harness", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": "cancel-harness", **counts})
    suite.set("timestamp", run.started)
    props = ET.SubElement(suite, "properties")
    for name, value in _run_fields(run).items():
        if name not in ("started", "finished"):
            text = ",".join(value) if isinstance(value, list) else str(value)
            ET.SubElement(props, "property", {"name": name, "value": text})
    for result in run.results:
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": f"cancel-harness.{result.incident}",
                "name": result.name,
                "time": f"{result.duration:.3f}",
            },
        )
        first = _clean(result.message.splitlines()[0] if result.message else "")
        if result.status is Status.FAILED:
            node = ET.SubElement(case, "failure", {"message": first, "type": "CheckFailed"})
            node.text = _details(result)
        elif result.status is Status.ERROR:
            node = ET.SubElement(case, "error", {"message": first, "type": "HarnessError"})
            node.text = _details(result)
        elif result.status is Status.NOT_APPLICABLE:
            ET.SubElement(case, "skipped", {"message": f"not applicable: {first}"})
        if result.warnings:
            out = ET.SubElement(case, "system-out")
            out.text = _clean("\n".join(f"warning: {w}" for w in result.warnings))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _run_fields(run: RunResult) -> dict[str, Any]:
    return {
        "seed": run.config.seed,
        "target": run.target_name,
        "defects": list(run.config.defects),
        "tempo": run.config.tempo,
        "started": run.started,
        "finished": run.finished,
    }


def results_json(run: RunResult) -> dict[str, Any]:
    counts = {s.value: run.count(s) for s in Status}
    return {
        **_run_fields(run),
        "counts": counts,
        "ok": run.ok,
        "notes": list(run.notes),
        "results": [r.to_json() for r in run.results],
    }


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_junit(run: RunResult, path: Path = DEFAULT_DIR / "junit.xml") -> Path:
    return write(path, junit_xml(run))


def write_json(run: RunResult, path: Path = DEFAULT_DIR / "results.json") -> Path:
    return write(path, json.dumps(results_json(run), indent=2) + "\n")


def _totals(run: RunResult) -> str:
    parts = [
        f"{run.count(Status.PASSED)} passed",
        f"{run.count(Status.FAILED)} failed",
        f"{run.count(Status.ERROR)} errors",
        f"{run.count(Status.NOT_APPLICABLE)} not applicable",
    ]
    warned = sum(1 for r in run.results if r.warnings)
    if warned:
        parts.append(f"{warned} with warnings")
    defects = f", defects {','.join(run.config.defects)}" if run.config.defects else ""
    return (
        f"{', '.join(parts)} in {_run_seconds(run):.1f} s "
        f"(target {run.target_name}{defects}, seed {run.config.seed}, tempo {run.config.tempo:g})"
    )


def summary_table(run: RunResult, width: int = 100) -> str:
    """One row per case: status, case, time, and the first line of the message."""
    if not run.results:
        return "no cases ran\n" + _totals(run)
    name_w = min(48, max(len(r.name) for r in run.results))
    rows = []
    for r in run.results:
        status = r.status.value.upper() if r.status in (Status.FAILED, Status.ERROR) else r.status
        line = f"{status:<15} {r.name:<{name_w}} {r.duration:6.2f}s"
        if r.message:
            room = max(20, width - len(line) - 2)
            first = r.message.splitlines()[0]
            line += "  " + (first if len(first) <= room else first[: room - 1] + "…")
        rows.append(line)
    return "\n".join([*rows, "", *run.notes, _totals(run)])


def failure_details(run: RunResult) -> str:
    """For each failed or broken case: its message, timeline and replay command."""
    blocks = []
    for r in run.results:
        if r.warnings and r.status not in (Status.FAILED, Status.ERROR):
            shown = "\n".join(f"  warning: {w}" for w in r.warnings)
            blocks.append(f"WARNING {r.name}: {r.title}\n{shown}\n  replay: {r.replay}")
        if r.status in (Status.FAILED, Status.ERROR):
            blocks.append(
                f"{r.status.value.upper()} {r.name}: {r.title}\n  {r.message}\n"
                f"{r.timeline}\n  replay: {r.replay}"
            )
    return "\n\n".join(blocks)


# --------------------------------------------------------------------------- mutants


def mutant_matrix(clean: RunResult, by_defect: Mapping[str, RunResult]) -> dict[str, Any]:
    """Which cases failed under each defect (caught it), and which claims were not borne out."""
    defects: dict[str, Any] = {}
    for defect, run in by_defect.items():
        caught = [r.name for r in run.results if r.status is Status.FAILED]
        claimed = sorted({r.id for r in run.results if defect in r.catches})
        caught_ids = {r.id for r in run.results if r.status is Status.FAILED}
        defects[defect] = {
            "caught_by": caught,
            "errors": [r.name for r in run.results if r.status is Status.ERROR],
            "claimed_by": claimed,
            "claimed_but_missed": [c for c in claimed if c not in caught_ids],
        }
    clean_bad = [r.name for r in clean.results if r.status in (Status.FAILED, Status.ERROR)]
    uncaught = [d for d, info in defects.items() if not info["caught_by"]]
    return {
        "seed": clean.config.seed,
        "target": clean.config.target,
        "tempo": clean.config.tempo,
        "clean": {"ok": not clean_bad, "failing": clean_bad},
        "defects": defects,
        "uncaught": uncaught,
        "ok": not clean_bad and not uncaught,
    }


def render_matrix(matrix: Mapping[str, Any]) -> str:
    """defect -> the cases that caught it; NOT CAUGHT rows are what needs a scenario."""
    lines = []
    clean = matrix["clean"]
    if clean["ok"]:
        lines.append("clean agent: every case passed")
    else:
        lines.append(f"clean agent FAILED {len(clean['failing'])}: {', '.join(clean['failing'])}")
    width = max((len(d) for d in matrix["defects"]), default=10)
    for defect, info in matrix["defects"].items():
        caught = info["caught_by"]
        row = f"{len(caught)}: {', '.join(caught)}" if caught else "NOT CAUGHT"
        lines.append(f"  {defect:<{width}}  {row}")
        if info["claimed_but_missed"]:
            missed = ", ".join(info["claimed_but_missed"])
            lines.append(f"  {'':<{width}}  claimed but not caught by: {missed}")
        if info["errors"]:
            lines.append(f"  {'':<{width}}  errors: {', '.join(info['errors'])}")
    verdict = (
        "every defect caught"
        if not matrix["uncaught"]
        else (f"{len(matrix['uncaught'])} defect(s) caught by no scenario")
    )
    lines.append(verdict)
    return "\n".join(lines)


def write_mutants(matrix: Mapping[str, Any], path: Path = DEFAULT_DIR / "mutants.json") -> Path:
    return write(path, json.dumps(matrix, indent=2) + "\n")
