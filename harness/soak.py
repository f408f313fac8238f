"""`cancel-harness soak`: the catalogue, pass after pass, until the duration is spent.

Pass k runs the selection with run seed SEED+k (as `run --repeat` does), so every failure
replays with the command it prints. A pass is never cut short: the soak stops at the first
pass boundary after the duration (or after `--passes N`), or after the current pass when
interrupted (Ctrl+C). One event loop, on a worker thread, lives for the whole soak: an agent
that runs in the harness process keeps its leaks there, as it would in a long-lived app.

With `explore` (`soak --explore N`, harness/explore/passes.py), each pass is followed by a
seeded search of N schedules on the same worker thread; a counterexample is a failure, with
its shrunk schedule and replay command.

After each pass, with no case live, the harness samples its process and the agent's process
tree (harness/leaks.py); the report gives each metric's start, end, slope and verdict. Only
counts per case and the failing results (their timelines) are kept, so memory stays flat
however long the soak runs. Exit: 1 on any failure or leak; 2 if the agent did not start;
3 if nothing failed but some case stayed indeterminate; 0 otherwise.
"""

from __future__ import annotations

import gc
import os
import queue
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import anyio

from harness import leaks
from harness.cases import (
    EXIT_FAILED,
    EXIT_INDETERMINATE,
    EXIT_OK,
    EXIT_USAGE,
    Case,
    CaseResult,
    ConfigError,
    RunConfig,
    Status,
    now_iso,
)
from harness.runner import Runner, TargetFactory

KEEP_FAILURES = 20  # failing results kept per case, with timelines (counts are kept for all)
DURATION_MAX = 7 * 24 * 3600.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)?")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, None: 1.0}


def parse_duration(text: str, flag: str = "--duration") -> float:
    """`1h`, `10m`, `90s`, `1h30m`, `500ms` or plain seconds; ConfigError otherwise."""
    compact = text.strip().lower().replace(" ", "")
    total, pos = 0.0, 0
    for match in _DURATION.finditer(compact):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    if not compact or pos != len(compact) or not 0 < total <= DURATION_MAX:
        raise ConfigError(
            f"{flag} {text}: expected a time such as 1h, 10m, 90s or 1h30m "
            f"(above 0, at most {DURATION_MAX / 86400:g} days)"
        )
    return total


@dataclass(slots=True)
class CaseTally:
    """One case over every pass."""

    name: str
    id: str
    kind: str
    incident: str
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[CaseResult] = field(default_factory=list)  # the first KEEP_FAILURES
    bad_total: int = 0

    @property
    def runs(self) -> int:
        return sum(self.counts.values())

    @property
    def bad(self) -> int:
        return sum(
            self.counts[s.value]
            for s in (Status.FAILED, Status.ERROR, Status.INDETERMINATE, Status.DID_NOT_START)
        )

    @property
    def judged(self) -> int:
        return self.runs - self.counts[Status.NOT_APPLICABLE.value]

    @property
    def flake_rate(self) -> float:
        return self.bad / self.judged if self.judged else 0.0

    @property
    def verdict(self) -> str:
        """passed | flaky (some runs did not pass) | failed (none passed) | not-applicable."""
        if not self.judged:
            return "not-applicable"
        if not self.bad:
            return "passed"
        return "failed" if self.bad == self.judged else "flaky"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "runs": self.runs,
            "counts": {s.value: self.counts[s.value] for s in Status if self.counts[s.value]},
            "flake_rate": round(self.flake_rate, 4),
            "failures": [
                {
                    "pass": r.repetition + 1,
                    "status": r.status.value,
                    "seed": r.seed,
                    "message": r.message,
                    "replay": r.replay,
                }
                for r in self.failures
            ],
            "failures_not_kept": self.bad_total - len(self.failures),
        }


@dataclass(slots=True)
class SoakResult:
    config: RunConfig
    duration: float
    started: str = ""
    finished: str = ""
    wall_seconds: float = 0.0
    passes: int = 0
    tallies: dict[str, CaseTally] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    stopped_by: str = "duration"  # duration | passes | interrupted | abandoned
    shard: str = ""
    notes: list[str] = field(default_factory=list)
    explore_examples: int = 0  # examples asked per pass (0: no exploration)
    explorations: list[dict[str, Any]] = field(default_factory=list)  # one per pass

    def add(self, result: CaseResult) -> None:
        tally = self.tallies.get(result.name)
        if tally is None:
            tally = CaseTally(result.name, result.id, result.kind, result.incident)
            self.tallies[result.name] = tally
        tally.counts[result.status.value] += 1
        if result.status not in (Status.PASSED, Status.NOT_APPLICABLE):
            tally.bad_total += 1
            if len(tally.failures) < KEEP_FAILURES:
                tally.failures.append(result)

    def count(self, status: Status) -> int:
        return sum(t.counts[status.value] for t in self.tallies.values())

    @property
    def cases_run(self) -> int:
        return sum(t.runs for t in self.tallies.values())

    def findings(self) -> list[dict[str, Any]]:
        """The explore passes that found a counterexample or could not run."""
        return [e for e in self.explorations if e["finding"] or e["error"]]

    def leaks(self) -> dict[str, dict[str, Any]]:
        return leaks.judge_all(self.samples)

    def leaking(self) -> list[str]:
        return [m for m, v in self.leaks().items() if v["verdict"] == "leak"]

    @property
    def exit_code(self) -> int:
        if self.count(Status.FAILED) or self.count(Status.ERROR) or self.leaking():
            return EXIT_FAILED
        if self.findings():
            return EXIT_FAILED
        if self.stopped_by == "abandoned":
            return EXIT_FAILED
        if self.count(Status.DID_NOT_START):
            return EXIT_USAGE
        if self.count(Status.INDETERMINATE):
            return EXIT_INDETERMINATE
        return EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "soak",
            "seed": self.config.seed,
            "seeds": [self.config.seed, self.config.seed + max(0, self.passes - 1)],
            "target": self.config.target,
            "defects": list(self.config.defects),
            "tempo": self.config.tempo,
            "shard": self.shard,
            "duration": self.duration,
            "started": self.started,
            "finished": self.finished,
            "wall_seconds": round(self.wall_seconds, 3),
            "passes": self.passes,
            "stopped_by": self.stopped_by,
            "cases_run": self.cases_run,
            "counts": {s.value: self.count(s) for s in Status},
            "cases": [t.to_json() for t in self.tallies.values()],
            "samples": self.samples,
            "leaks": self.leaks(),
            "explore": {
                "examples_per_pass": self.explore_examples,
                "examples": sum(e["examples"] for e in self.explorations),
                "findings": len(self.findings()),
                "passes": self.explorations,
            }
            if self.explore_examples
            else None,
            "notes": self.notes,
            "exit_code": self.exit_code,
            "ok": self.exit_code == EXIT_OK,
        }


@dataclass(slots=True)
class _State:
    runner: Runner | None = None
    stop: threading.Event = field(default_factory=threading.Event)


def soak(
    cases: Sequence[Case],
    base: RunConfig,
    make_factory: Callable[[RunConfig], TargetFactory],
    *,
    duration: float,
    passes: int | None = None,
    on_result: Callable[[CaseResult], None] = lambda r: None,
    on_pass: Callable[[int, SoakResult], None] = lambda k, s: None,
    slack: float = 10.0,
    explore: Callable[[int, int], dict[str, Any]] | None = None,
    explore_examples: int = 0,
    on_explore: Callable[[dict[str, Any]], None] = lambda e: None,
) -> SoakResult:
    """Run pass after pass on one worker loop until `duration` s (or `passes`) is spent;
    `explore(seed, k)`, when given, runs after pass k's cases (see the module docstring)."""
    out = SoakResult(base, duration, started=now_iso(), explore_examples=explore_examples)
    inbox: queue.Queue[tuple[str, Any] | BaseException | None] = queue.Queue()
    state = _State()
    began = time.monotonic()

    async def session() -> None:
        calibrations: dict[Any, Any] = {}
        left_open = 0
        inbox.put(("sample", _sampled(began, 0, left_open)))
        k = 0
        while True:
            config = replace(base, seed=base.seed + k, repetition=k)
            runner = Runner(config, make_factory(config))
            runner.calibrations = calibrations  # one plain turn per kind, for the whole soak
            state.runner = runner
            if config.calibrate:
                await runner.calibrate(cases)
            await runner.run_each(cases, lambda i, r: inbox.put(("result", r)))
            state.runner = None
            left_open += runner.left_open
            for name in runner.left_open_cases:
                inbox.put(("note", f"pass {k + 1}: {name} left a provider connection open"))
            if explore is not None and not state.stop.is_set():
                record = await anyio.to_thread.run_sync(explore, base.seed, k)
                inbox.put(("explore", record))
            gc.collect()  # garbage is not a leak; what survives a collection may be
            k += 1
            inbox.put(("pass", (k, _sampled(began, k, left_open))))
            spent = time.monotonic() - began >= duration
            if state.stop.is_set() or spent or (passes is not None and k >= passes):
                return

    def work() -> None:
        try:
            anyio.run(session)
        except BaseException as exc:  # handed to the caller's thread
            inbox.put(exc)
        else:
            inbox.put(None)

    # Agents and their tools inherit this, so `orphans` counts this soak's escaped processes
    # and not those of another harness run on the machine.
    os.environ.setdefault(leaks.SOAK_VARIABLE, f"{os.getpid()}-{time.time_ns()}")
    threading.Thread(target=work, name="cancel-harness-soak", daemon=True).start()
    out.stopped_by = "duration"
    while True:
        try:
            item = inbox.get(timeout=0.2)
        except queue.Empty:
            runner = state.runner
            stuck = runner.overdue(slack) if runner is not None else None
            if runner is not None and stuck is not None:
                out.add(runner.abandoned(stuck))
                out.stopped_by = "abandoned"
                out.notes.append(
                    f"abandoned in pass {out.passes + 1}: {stuck.name} could not be stopped"
                )
                break
            continue
        except KeyboardInterrupt:
            if state.stop.is_set():
                raise
            state.stop.set()
            out.stopped_by = "interrupted"
            out.notes.append("interrupted: stopped after the pass under way")
            continue
        if isinstance(item, BaseException):
            raise item
        if item is None:
            break
        what, payload = item
        if what == "result":
            out.add(payload)
            on_result(payload)
        elif what == "sample":
            out.samples.append(payload)
        elif what == "note":
            out.notes.append(payload)
        elif what == "explore":
            out.explorations.append(payload)
            on_explore(payload)
        else:
            out.passes, sampled = payload
            out.samples.append(sampled)
            on_pass(out.passes, out)
    if out.stopped_by == "duration" and passes is not None and out.passes >= passes:
        out.stopped_by = "passes"
    out.finished = now_iso()
    out.wall_seconds = time.monotonic() - began
    return out


def _sampled(began: float, after_pass: int, left_open: int) -> dict[str, Any]:
    return {
        "t": round(time.monotonic() - began, 3),
        "pass": after_pass,
        **leaks.sample(left_open=left_open),
    }


# ---------------------------------------------------------------------------- reports


def case_table(result: SoakResult) -> str:
    """Per case: passed / failed / indeterminate / not applicable, and the failing seeds."""
    if not result.tallies:
        return "no cases ran"
    width = min(48, max(len(n) for n in result.tallies))
    head = f"{'VERDICT':<14} {'CASE':<{width}} {'PASS':>5} {'FAIL':>5} {'INDET':>5} {'N/A':>5}"
    rows = [head]
    for t in result.tallies.values():
        failed = t.counts[Status.FAILED.value] + t.counts[Status.ERROR.value]
        failed += t.counts[Status.DID_NOT_START.value]
        row = (
            f"{t.verdict:<14} {t.name:<{width}} {t.counts[Status.PASSED.value]:>5} "
            f"{failed:>5} {t.counts[Status.INDETERMINATE.value]:>5} "
            f"{t.counts[Status.NOT_APPLICABLE.value]:>5}"
        )
        if t.failures:
            seeds = ", ".join(f"pass {r.repetition + 1} seed {r.seed}" for r in t.failures[:3])
            row += f"  not passed: {seeds}" + (" ..." if t.bad_total > 3 else "")
        rows.append(row)
    return "\n".join(rows)


def failures_text(result: SoakResult) -> str:
    blocks = []
    for t in result.tallies.values():
        for r in t.failures:
            blocks.append(
                f"{r.status.value.upper()} {r.name} (pass {r.repetition + 1}, case seed "
                f"{r.seed}): {r.message.splitlines()[0] if r.message else ''}\n"
                f"  replay: {r.replay}"
            )
        if t.bad_total > len(t.failures):
            blocks.append(f"  ... and {t.bad_total - len(t.failures)} more of {t.name}")
    for e in result.findings():
        blocks.append(explore_finding_text(e))
    return "\n".join(blocks)


def explore_finding_text(e: dict[str, Any]) -> str:
    """One explore pass's counterexample (or why it could not run), as the CLI prints it."""
    if e["error"]:
        return f"ERROR explore (pass {e['pass']}, seed {e['seed']}): {e['error']}"
    f = e["finding"]
    steps = "\n".join(f"    {n}. {line}" for n, line in enumerate(f["steps"], start=1))
    return (
        f"{f['status'].upper()} explore (pass {e['pass']}, seed {e['seed']}, after "
        f"{f['found_after']} examples): {f['message'].splitlines()[0] if f['message'] else ''}\n"
        f"  minimal schedule:\n{steps}\n  replay: {f['replay']}\n  scenario: {f['scenario']}"
    )


def explore_table(result: SoakResult) -> str:
    """Per pass: the examples explored and what they found."""
    if not result.explore_examples:
        return ""
    rows = [
        f"{'PASS':>4} {'SEED':>12} {'EXAMPLES':>8} {'PASSED':>6} {'DISC':>5} {'INDET':>5}  FOUND"
    ]
    for e in result.explorations:
        found = e["finding"]["status"] if e["finding"] else ("error" if e["error"] else "nothing")
        rows.append(
            f"{e['pass']:>4} {e['seed']:>12} {e['examples']:>8} {e['passed']:>6} "
            f"{e['discarded']:>5} {e['indeterminate']:>5}  {found}"
        )
    return "\n".join(rows)


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == "rss_kib":
        return f"{value / 1024:.1f} MiB"
    return f"{value:g}"


def leak_table(result: SoakResult) -> str:
    rows = [f"{'METRIC':<10} {'START':>12} {'END':>12} {'SLOPE/HOUR':>14}  VERDICT"]
    for metric, v in result.leaks().items():
        slope = v["slope_per_hour"]
        shown = f"{slope / 1024:+.1f} MiB" if metric == "rss_kib" else f"{slope:+.2f}"
        verdict = v["verdict"]
        if verdict == "leak":
            grew, needed = _fmt(metric, v["growth"]), _fmt(metric, v["needed"])
            verdict = f"LEAK (grew {grew}, threshold {needed})"
        rows.append(
            f"{metric:<10} {_fmt(metric, v['start']):>12} {_fmt(metric, v['end']):>12} "
            f"{shown:>14}  {verdict}"
        )
    return "\n".join(rows)


def totals_line(result: SoakResult) -> str:
    seeds = f"{result.config.seed}..{result.config.seed + max(0, result.passes - 1)}"
    counts = ", ".join(
        f"{result.count(s)} {s.value.replace('-', ' ')}"
        for s in (Status.PASSED, Status.FAILED, Status.INDETERMINATE, Status.NOT_APPLICABLE)
    )
    rare = [
        f"{result.count(s)} {s.value.replace('-', ' ')}"
        for s in (Status.ERROR, Status.DID_NOT_START)
        if result.count(s)
    ]
    leaking = result.leaking()
    if result.explore_examples:
        examples = sum(e["examples"] for e in result.explorations)
        found = len(result.findings())
        counts += f"; explore: {examples} examples, {found} finding(s)"
    return (
        f"soak: {result.passes} pass(es) in {result.wall_seconds:.1f} s (seeds {seeds}, "
        f"stopped by {result.stopped_by}), {result.cases_run} case runs: {counts}"
        + (f", {', '.join(rare)}" if rare else "")
        + (f"; LEAK: {', '.join(leaking)}" if leaking else "; no leak trend")
    )


def junit_xml(result: SoakResult) -> str:
    """One testcase per case over the soak, and one for the leak verdict."""
    tallies = list(result.tallies.values())
    failing = [t for t in tallies if t.verdict in ("failed", "flaky")]
    leaking = result.leaking()
    exploring = 1 if result.explore_examples else 0
    findings = result.findings()
    counts = {
        "tests": str(len(tallies) + 1 + exploring),
        "failures": str(len(failing) + (1 if leaking else 0) + (1 if findings else 0)),
        "errors": "0",
        "skipped": str(sum(1 for t in tallies if t.verdict == "not-applicable")),
        "time": f"{result.wall_seconds:.3f}",
    }
    root = ET.Element("testsuites", {"name": "cancel-harness soak", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": "cancel-harness soak", **counts})
    suite.set("timestamp", result.started)
    for t in tallies:
        case = ET.SubElement(
            suite, "testcase", {"classname": f"cancel-harness.soak.{t.incident}", "name": t.name}
        )
        summary = ", ".join(f"{n} {s}" for s, n in t.counts.items() if n)
        if t.verdict in ("failed", "flaky"):
            first = t.failures[0]
            node = ET.SubElement(
                case,
                "failure",
                {"message": f"{t.verdict}: {summary}", "type": "SoakFailure"},
            )
            node.text = "\n".join(
                f"pass {r.repetition + 1}, seed {r.seed}: {r.message}\n  replay: {r.replay}"
                for r in t.failures
            )
            out = ET.SubElement(case, "system-out")
            out.text = "\n".join(
                [summary, "first failure's timeline:", first.timeline, f"replay: {first.replay}"]
            )
        elif t.verdict == "not-applicable":
            ET.SubElement(case, "skipped", {"message": "not applicable"})
        else:
            ET.SubElement(case, "system-out").text = summary
    if exploring:
        case = ET.SubElement(
            suite, "testcase", {"classname": "cancel-harness.soak", "name": "explore"}
        )
        if findings:
            seen = findings[0]
            message = seen["error"] or seen["finding"]["message"].splitlines()[0]
            node = ET.SubElement(
                case,
                "failure",
                {"message": f"{len(findings)} finding(s): {message}", "type": "ExploreFinding"},
            )
            node.text = "\n\n".join(explore_finding_text(e) for e in findings)
            timeline = (seen["finding"] or {}).get("timeline", "")
            out_text = [explore_table(result), explore_finding_text(seen)]
            ET.SubElement(case, "system-out").text = "\n\n".join(
                [*out_text, f"timeline:\n{timeline}"] if timeline else out_text
            )
        else:
            ET.SubElement(case, "system-out").text = explore_table(result)
    case = ET.SubElement(suite, "testcase", {"classname": "cancel-harness.soak", "name": "leaks"})
    if leaking:
        node = ET.SubElement(
            case, "failure", {"message": f"leak trend: {', '.join(leaking)}", "type": "Leak"}
        )
        node.text = leak_table(result)
    ET.SubElement(case, "system-out").text = leak_table(result)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
