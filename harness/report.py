"""Reports of a run: JUnit XML for CI, results.json for tools, a table and details for people.

Written to reports/latest/ by default; a report path is checked before any case runs
(`check_report_path`: missing parent directories are created, a directory or an unwritable
place is refused). Statuses map to JUnit as: failed -> <failure>, error and did-not-start ->
<error>, not-applicable and indeterminate -> <skipped> (its message says which; an
indeterminate run still exits 3, see harness/cases.py). Re-runs are listed in <system-out>.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from harness.cases import CaseResult, RunResult, Status

DEFAULT_DIR = Path("reports/latest")
_XML_INVALID = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_LOUD = (Status.FAILED, Status.ERROR, Status.INDETERMINATE, Status.DID_NOT_START)


class ReportPathError(ValueError):
    """A report path that cannot be written; the message names the path and the fix."""


def check_report_path(path: Path, flag: str, example: str = "results.json") -> None:
    """Refuse, before anything runs, a report path that could not be written at the end."""
    shown = f"{flag} {path}"
    if str(path).endswith(("/", os.sep)) or path.is_dir():
        raise ReportPathError(
            f"{shown} is a directory; name a file in it, such as {path / example}"
        )
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ReportPathError(f"{shown}: {ancestor} is a file, so no directory can be made there")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ReportPathError(f"{shown}: cannot write in {ancestor}; choose a writable place")
    if path.exists() and not os.access(path, os.W_OK):
        raise ReportPathError(f"{shown}: the file exists and cannot be overwritten")


def _clean(text: str) -> str:
    return _XML_INVALID.sub("?", text)


def _details(result: CaseResult) -> str:
    parts = [result.message, "", "timeline:", result.timeline, "", f"replay: {result.replay}"]
    return _clean("\n".join(parts))


def _run_seconds(run: RunResult) -> float:
    return run.wall_seconds or sum(r.duration for r in run.results)


def _case_name(run: RunResult, result: CaseResult) -> str:
    return f"{result.name} #{result.repetition + 1}" if run.repetitions > 1 else result.name


def junit_xml(run: RunResult) -> str:
    """One testcase per case (per repetition); failures and errors carry timeline and replay."""
    counts = {
        "tests": str(len(run.results)),
        "failures": str(run.count(Status.FAILED)),
        "errors": str(run.count(Status.ERROR) + run.count(Status.DID_NOT_START)),
        "skipped": str(run.count(Status.NOT_APPLICABLE) + run.count(Status.INDETERMINATE)),
        "time": f"{_run_seconds(run):.3f}",
    }
    root = ET.Element("testsuites", {"name": "cancel-harness", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": "cancel-harness", **counts})
    suite.set("timestamp", run.started)
    props = ET.SubElement(suite, "properties")
    for name, value in _run_fields(run).items():
        if name not in ("started", "finished"):
            text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            ET.SubElement(props, "property", {"name": name, "value": text})
    for result in run.results:
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": f"cancel-harness.{result.incident}",
                "name": _case_name(run, result),
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
        elif result.status is Status.DID_NOT_START:
            node = ET.SubElement(case, "error", {"message": first, "type": "DidNotStart"})
            node.text = _details(result)
        elif result.status is Status.NOT_APPLICABLE:
            ET.SubElement(case, "skipped", {"message": f"not applicable: {first}"})
        elif result.status is Status.INDETERMINATE:
            node = ET.SubElement(case, "skipped", {"message": f"indeterminate: {first}"})
            node.text = _details(result)
        said = [f"warning: {w}" for w in result.warnings]
        if result.reruns:
            said.append(_attempts(result))
        if said:
            out = ET.SubElement(case, "system-out")
            out.text = _clean("\n".join(said))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _attempts(result: CaseResult) -> str:
    return "\n".join(
        f"attempt {n}: {a.status.value}" + (f": {a.message}" if a.message else "")
        for n, a in enumerate(result.attempts, 1)
    )


def _run_fields(run: RunResult) -> dict[str, Any]:
    return {
        "seed": run.config.seed,
        "target": run.target_name,
        "defects": list(run.config.defects),
        "tempo": run.config.tempo,
        "reruns": run.config.reruns,
        "repetitions": run.repetitions,
        "shuffled": run.shuffled,
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
        "exit_code": run.exit_code,
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
    rare = [
        f"{run.count(s)} {s.value.replace('-', ' ')}"
        for s in (Status.INDETERMINATE, Status.DID_NOT_START)
        if run.count(s)
    ]
    rerun = sum(1 for r in run.results if r.reruns)
    if rerun:
        rare.append(f"{rerun} re-run after an indeterminate verdict")
    warned = sum(1 for r in run.results if r.warnings)
    if warned:
        rare.append(f"{warned} with warnings")
    defects = f", defects {','.join(run.config.defects)}" if run.config.defects else ""
    reps = f", {run.repetitions} repetitions" if run.repetitions > 1 else ""
    # The first four counts and "in X s" keep their place: tools read this line.
    return (
        f"{', '.join(parts)} in {_run_seconds(run):.1f} s "
        f"(target {run.target_name}{defects}, seed {run.config.seed}, "
        f"tempo {run.config.tempo:g}{reps})" + (f"; {', '.join(rare)}" if rare else "")
    )


def summary_table(run: RunResult, width: int = 100) -> str:
    """One row per case: status, case, time, and the first line of the message.

    With repetitions, one row per case with its counts instead (see `repeat_table`).
    """
    if not run.results:
        return "no cases ran\n" + _totals(run)
    if run.repetitions > 1:
        return repeat_table(run)
    name_w = min(48, max(len(r.name) for r in run.results))
    rows = []
    for r in run.results:
        status = r.status.value.upper() if r.status in _LOUD else r.status.value
        line = f"{status:<15} {r.name:<{name_w}} {r.duration:6.2f}s"
        first = r.message.splitlines()[0] if r.message else ""
        if r.reruns:
            first = f"({r.history()}) {first}".rstrip()
        if first:
            room = max(20, width - len(line) - 2)
            line += "  " + (first if len(first) <= room else first[: room - 1] + "…")
        rows.append(line)
    return "\n".join([*rows, "", *run.notes, _totals(run)])


def repeat_table(run: RunResult) -> str:
    """Per case over every repetition: how many ended each way, and the seeds that failed."""
    order = list(dict.fromkeys(r.name for r in run.results))
    by_case: dict[str, list[CaseResult]] = {name: [] for name in order}
    for r in run.results:
        by_case[r.name].append(r)
    name_w = min(48, max(len(n) for n in order))
    rows = []
    for name in order:
        results = by_case[name]
        counts = Counter(r.status for r in results)
        text = ", ".join(f"{n} {s.value}" for s, n in counts.items())
        rerun = sum(1 for r in results if r.reruns)
        if rerun:
            text += f" ({rerun} after re-runs)"
        bad = [r for r in results if r.status in _LOUD]
        if bad:
            seeds = ", ".join(f"#{r.repetition + 1}" for r in bad[:5])
            text += f"; not passed in repetition {seeds}"
        mark = "FLAKY" if bad and len(bad) < len(results) else ("BAD" if bad else "ok")
        rows.append(f"{mark:<6} {name:<{name_w}}  {text}")
    return "\n".join([*rows, "", _totals(run)])


def failure_details(run: RunResult) -> str:
    """For each case that did not pass: its message, timeline and replay command."""
    blocks = []
    for r in run.results:
        if r.warnings and r.status not in _LOUD:
            shown = "\n".join(f"  warning: {w}" for w in r.warnings)
            blocks.append(f"WARNING {r.name}: {r.title}\n{shown}\n  replay: {r.replay}")
        if r.status in _LOUD:
            rep = f" (repetition {r.repetition + 1})" if run.repetitions > 1 else ""
            history = f"\n  {_attempts(r)}" if r.reruns else ""
            blocks.append(
                f"{r.status.value.upper()} {r.name}{rep}: {r.title}\n  {r.message}{history}\n"
                f"{r.timeline}\n  replay: {r.replay}"
            )
    return "\n\n".join(blocks)
