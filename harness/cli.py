"""The `cancel-harness` command line: list, run, mutants, soak, report merge, serve, proxy.

Exit codes (harness/cases.py, `RunResult.exit_code`): 0 every case passed (or was not
applicable); 1 a check failed or the harness broke; 2 bad usage or setup: a one-line error
before any case runs, a target that did not start, or a report that could not be written
(the summary is printed first, so no result is lost); 3 nothing failed, but some case stayed
indeterminate after its re-runs (the machine was too loaded to judge it: see harness/timing.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import anyio

if TYPE_CHECKING:
    from harness.explore.passes import SoakExplore

from fake_providers import FaultSpecError, ProviderStartError
from fake_providers.kinds import ProviderKind, UnknownProviderKind
from harness import mutants
from harness.cases import (
    EXIT_FAILED,
    EXIT_INDETERMINATE,
    EXIT_OK,
    EXIT_USAGE,
    RERUNS_MAX,
    TEMPO_MAX,
    TEMPO_MIN,
    TEMPO_RELIABLE,
    Case,
    CaseResult,
    ConfigError,
    RunConfig,
    RunResult,
    Status,
    check_seconds,
    check_tempo,
    new_seed,
    plan_cases,
)
from harness.guard import run_guarded
from harness.html import mutants_page, run_page, soak_page, write_html
from harness.merge import MergeError, merge
from harness.progress import Progress
from harness.report import (
    DEFAULT_DIR,
    ReportPathError,
    check_report_path,
    failure_details,
    summary_table,
    write,
    write_json,
    write_junit,
)
from harness.runner import Runner
from harness.scenario import (
    ALL_KINDS,
    DEFAULT_TEMPO,
    CatalogueError,
    Registry,
    ScenarioDefinitionError,
    ScenarioSpec,
    UnknownSelectorError,
    load_catalogue,
)
from harness.seeds import SEED_LIMIT, shuffled
from harness.shards import Shard, parse_shard
from harness.target import Target
from harness.targets import TargetSpecError, make_target
from reference_agent.defects import Defect, UnknownDefectError, parse_defect

# Cases run at once. A case against the embedded reference agent mostly waits (its watch
# windows), so four share two cores well: the catalogue takes 16 s instead of 25 s on an idle
# 2-core machine. Every other target starts an agent process per case, or may share
# process-wide state between cases (a Python adapter): two at once.
DEFAULT_JOBS = 2
IN_PROCESS_JOBS = 4
DEFAULT_RERUNS = 2  # run: re-runs of an indeterminate case; mutants: of a failing cell
UNTIL_FAILURE_CAP = 1000  # repetitions of `--until-failure` without `--repeat`

type TargetMaker = Callable[[str, Sequence[str]], Target]


class UsageError(Exception):
    """Bad input from the user; printed as one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit 2), like every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"cancel-harness: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cancel-harness",
        description="Reliability test harness for the cancellation paths of LLM agents.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    listing = commands.add_parser(
        "list",
        help="show the scenario catalogue",
        description="Show the catalogue: what each scenario needs of a target and catches; "
        "with --target, which scenarios apply to it and why the others do not.",
    )
    listing.add_argument("selectors", nargs="*", metavar="SELECTOR")
    listing.add_argument(
        "--target", default=None, help="say which scenarios apply to this target (a --target SPEC)"
    )
    run = commands.add_parser(
        "run",
        help="run scenarios against a target",
        description="Run scenarios (all by default) against a target; exit 1 if any fails.",
    )
    run.add_argument(
        "selectors",
        nargs="*",
        metavar="SELECTOR",
        help="scenario id, glob on ids (esc.*), incident (I1) or tag:NAME; default: all",
    )
    run.add_argument("--target", default="reference", help="the agent to test (default reference)")
    _common(run)
    run.add_argument(
        "--defect",
        action="append",
        default=[],
        metavar="NAME",
        help="switch a known bug on in the reference agent (repeatable)",
    )
    run.add_argument(
        "--reruns",
        type=int,
        default=DEFAULT_RERUNS,
        metavar="N",
        help="re-run a case whose verdict is indeterminate (the harness itself was stalled) "
        f"up to N times (default {DEFAULT_RERUNS}, at most {RERUNS_MAX})",
    )
    run.add_argument(
        "--repeat",
        type=int,
        default=None,
        metavar="N",
        help="run the selection N times, repetition i with seed SEED+i (flake hunting)",
    )
    run.add_argument(
        "--until-failure",
        action="store_true",
        help="repeat until a repetition has a failure (at most --repeat N, "
        f"else {UNTIL_FAILURE_CAP} repetitions)",
    )
    run.add_argument(
        "--shuffle", action="store_true", help="run the cases in an order drawn from the seed"
    )
    run.add_argument(
        "--junit",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"JUnit XML path (default {DEFAULT_DIR}/junit.xml; missing directories are made)",
    )
    run.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"results.json path (default {DEFAULT_DIR}/results.json)",
    )
    _html_option(run)
    run.add_argument("-v", "--verbose", action="store_true", help="every case, full timelines")
    run.add_argument(
        "--no-calibration",
        action="store_true",
        help="skip the plain turn per provider kind that teaches the harness what the agent's "
        "turn calls look like (it tells a title call shaped like a turn's from the turn)",
    )
    run.add_argument(
        "--strict-side-traffic",
        action="store_true",
        help="fail a case when side traffic (titles, memory, summaries) outlives a cancel or "
        "starts after it; by default that is a warning",
    )
    mutant = commands.add_parser(
        "mutants",
        help="prove the catalogue catches every reference-agent defect",
        description="Run the catalogue on the clean reference agent, then once per defect; a "
        "case catches a defect only if it fails in every one of its runs.",
    )
    mutant.add_argument("selectors", nargs="*", metavar="SELECTOR")
    mutant.add_argument(
        "--target",
        default="reference",
        help=f"the reference agent's door to go through: {', '.join(mutants.DOORS)}",
    )
    mutant.add_argument(
        "--defect",
        action="append",
        default=[],
        metavar="NAME",
        help="only these defects (repeatable; default: every defect)",
    )
    _common(mutant)
    mutant.add_argument(
        "--reruns",
        type=int,
        default=DEFAULT_RERUNS,
        metavar="K",
        help=f"re-run a failing case K more times; it catches the defect only if every run "
        f"fails (default {DEFAULT_RERUNS}: 3 runs in all)",
    )
    mutant.add_argument("--json", type=Path, default=None, metavar="PATH", help="mutants.json path")
    _html_option(mutant)
    _serve_parser(commands)
    _explore_parser(commands)
    _proxy_parser(commands)
    _report_parser(commands)
    _soak_parser(commands)
    return parser


def _soak_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    soak = commands.add_parser(
        "soak",
        help="run the catalogue pass after pass for a while; flake and leak statistics",
        description="Run the selection pass after pass (pass k with seed SEED+k) until the "
        "duration is spent, counting each case's verdicts and sampling the harness's and the "
        "agent's fds, threads, tasks, children and RSS after every pass. Exit 1 on any "
        "failure or a leak trend (harness/leaks.py).",
    )
    soak.add_argument("selectors", nargs="*", metavar="SELECTOR")
    soak.add_argument("--target", default="reference", help="the agent to test (default reference)")
    soak.add_argument(
        "--duration",
        required=True,
        metavar="TIME",
        help="how long to soak, such as 1h, 10m or 1h30m; the pass under way when it is "
        "spent finishes (a pass is never cut short)",
    )
    soak.add_argument(
        "--passes",
        type=int,
        default=None,
        metavar="N",
        help="stop after N passes if the duration is not spent before",
    )
    _common(soak)
    soak.add_argument(
        "--defect",
        action="append",
        default=[],
        metavar="NAME",
        help="switch a known bug on in the reference agent (repeatable)",
    )
    soak.add_argument(
        "--reruns",
        type=int,
        default=DEFAULT_RERUNS,
        metavar="N",
        help=f"re-run an indeterminate case up to N times (default {DEFAULT_RERUNS})",
    )
    soak.add_argument(
        "--explore",
        type=int,
        default=0,
        metavar="N",
        help="after each pass, explore N schedules with hypothesis (seeded per pass and "
        "shard; a counterexample fails the soak); default 0: the catalogue only",
    )
    soak.add_argument("--json", type=Path, default=None, metavar="PATH", help="soak.json path")
    soak.add_argument("--junit", type=Path, default=None, metavar="PATH", help="JUnit XML path")
    _html_option(soak)


def _report_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    report = commands.add_parser(
        "report",
        help="work with reports: merge the shards of a CI matrix",
        description="Work with reports written by run (reports/latest by default).",
    )
    actions = report.add_subparsers(dest="report_command", metavar="ACTION", parser_class=_Parser)
    merge = actions.add_parser(
        "merge",
        help="merge shards' results.json into one report (JUnit, JSON, HTML)",
        description="Merge the results.json of each shard (`run --shard I/N`) into one run's "
        "report; exit as that run would: 1 if any case failed, or if a selected case is in "
        "no shard's report.",
    )
    merge.add_argument(
        "dirs",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="a shard's report directory (or its results.json)",
    )
    merge.add_argument(
        "--out",
        type=Path,
        default=Path("reports/merged"),
        metavar="DIR",
        help="where junit.xml, results.json and index.html go (default reports/merged)",
    )


def _html_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--html",
        type=Path,
        default=None,
        metavar="PATH",
        help="the HTML report, one self-contained page (default: index.html beside the JSON "
        f"report, {DEFAULT_DIR}/index.html)",
    )


def _common(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--provider",
        action="append",
        default=[],
        metavar="KIND",
        help=f"provider kind (repeatable): {', '.join(ALL_KINDS)}; default: each scenario's",
    )
    sub.add_argument("--seed", type=int, default=None, help="seed (default: random, printed)")
    sub.add_argument(
        "--tempo",
        type=float,
        default=DEFAULT_TEMPO,
        metavar="SECONDS",
        help=f"the interval every wait is a multiple of (default {DEFAULT_TEMPO}; valid "
        f"{TEMPO_MIN:g} to {TEMPO_MAX:g}, below {TEMPO_RELIABLE:g} too fast to time reliably)",
    )
    sub.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="per case, agent start-up excluded (default: 200 x tempo, at least 10 s)",
    )
    sub.add_argument(
        "--tls",
        action="store_true",
        help="the fake provider serves https; the agent is given its CA ({ca_file})",
    )
    sub.add_argument(
        "--via",
        choices=("direct", "proxy"),
        default=None,
        help="how the agent reaches the fake provider: its base URL (direct), or its real base "
        "URL through `cancel-harness proxy` (proxy; docs/proxy.md); default: the target's",
    )
    sub.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="cases run at once, each with its own provider and agent (default "
        f"{IN_PROCESS_JOBS} against the embedded reference agent, {DEFAULT_JOBS} otherwise)",
    )
    sub.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="run only shard I of N (a CI matrix of N machines; the split is by case name, "
        "so give every shard the same --seed and merge with `cancel-harness report merge`)",
    )


def _serve_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    from fake_providers.limits import Limits

    defaults = Limits()
    serve = commands.add_parser(
        "serve",
        help="run a standalone fake provider to point an agent at",
        description="Run a fake LLM provider on loopback and show every connection live.",
    )
    serve.add_argument(
        "--provider",
        action="append",
        default=[],
        metavar="KIND",
        help="only print this provider's base URL (repeatable; all kinds are always served): "
        + ", ".join(ProviderKind),
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    serve.add_argument("--tls", action="store_true", help="serve https with a throwaway CA")
    serve.add_argument(
        "--tls-dir", type=Path, default=None, help="where to write ca.pem (default: a temp dir)"
    )
    serve.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="fault rule such as 'pace=100ms,hang-after=5' (repeatable; first match wins)",
    )
    serve.add_argument(
        "--ledger-log",
        type=Path,
        default=None,
        metavar="PATH",
        help="append every connection to this JSONL file as it ends (the in-memory ledger "
        "keeps the recent 10,000 connections)",
    )
    serve.add_argument(
        "--request-timeout",
        type=float,
        default=defaults.request_timeout,
        metavar="S",
        help="a request must be whole this many seconds after its first byte (default "
        f"{defaults.request_timeout:g}); a streaming response is never timed out",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="serve from N processes on one port (SO_REUSEPORT), one provider to you: one "
        "ledger, faults and gates for all (default 1; 2 uses both cores of a 2-core machine)",
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=defaults.idle_timeout,
        metavar="S",
        help=f"close a keep-alive connection idle this long (default {defaults.idle_timeout:g})",
    )


def main(
    argv: Sequence[str] | None = None,
    *,
    catalogue: Registry | None = None,
    targets: TargetMaker | None = None,
) -> int:
    """Entry point. `catalogue` and `targets` stand in for the scenarios package and
    `make_target` (tests, embedding)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage line already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "explore":
            return _explore(args, catalogue, targets or make_target)
        if args.command == "proxy":
            return _proxy(args)
        if args.command == "report":
            return _report(args)
        if args.command not in ("list", "run", "mutants", "soak"):
            parser.print_help()
            return EXIT_USAGE
        registry = catalogue if catalogue is not None else load_catalogue()
        if args.command == "list":
            specs = registry.select(args.selectors)
            if args.target is None:
                print(catalogue_table(specs))
                return EXIT_OK
            maker = targets or make_target
            print(applicability_table(specs, maker(args.target, ())))
            return EXIT_OK
        options = _options(args, registry, targets or make_target)
        if args.command == "run":
            return _run(options)
        if args.command == "soak":
            return _soak(options, args, registry)
        return _mutants(options)
    except (
        UsageError,
        ConfigError,
        ReportPathError,
        mutants.MutantsTargetError,
        UnknownProviderKind,
        FaultSpecError,
        ProviderStartError,
        UnknownSelectorError,
        UnknownDefectError,
        TargetSpecError,
        CatalogueError,
        ScenarioDefinitionError,
        MergeError,
    ) as exc:
        print(f"cancel-harness: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the last column is left ragged."""
    last = len(header) - 1
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(last)]
    return "\n".join(
        "  ".join(f"{cell:<{widths[i]}}" for i, cell in enumerate(row[:last])) + "  " + row[last]
        for row in (header, *rows)
    )


def _needs(spec: ScenarioSpec) -> str:
    return ",".join(sorted(c.value for c in spec.requires)) or "-"


def catalogue_table(specs: Sequence[ScenarioSpec]) -> str:
    """`cancel-harness list`: id, incident, tags, providers, needs, catches."""
    if not specs:
        return "the catalogue is empty: no scenario modules in the scenarios package yet"
    header = ("ID", "INCIDENT", "TAGS", "PROVIDERS", "NEEDS", "CATCHES")
    rows = [
        (
            s.id,
            s.incident,
            ",".join(s.tags) or "-",
            "all" if set(s.providers) == set(ALL_KINDS) else ",".join(s.providers),
            _needs(s),
            ",".join(s.catches) or "-",
        )
        for s in specs
    ]
    return _table(header, rows)


def applicability_table(specs: Sequence[ScenarioSpec], target: Target) -> str:
    """`cancel-harness list --target T`: which scenarios apply to T, and what the rest lack."""
    have = frozenset(target.capabilities)
    rows = []
    for s in specs:
        missing = sorted(c.value for c in s.requires - have)
        verdict = "applies" if not missing else "needs " + ",".join(missing)
        rows.append((s.id, _needs(s), verdict))
    applicable = sum(1 for r in rows if r[2] == "applies")
    caps = ",".join(sorted(c.value for c in have))
    head = f"target {target.name}: capabilities {caps}"
    foot = f"{applicable} of {len(rows)} scenarios apply (others: not applicable, never passed)"
    return "\n".join([head, "", _table(("ID", "NEEDS", "ON THIS TARGET"), rows), "", foot])


@dataclass(frozen=True, slots=True)
class _Options:
    cases: list[Case]
    config: RunConfig
    make: TargetMaker
    junit: Path | None
    json: Path | None
    verbose: bool
    html: Path | None = None
    repeat: int = 1
    until_failure: bool = False
    shuffle: bool = False
    reruns: int = DEFAULT_RERUNS
    shard: Shard | None = None
    selection: tuple[str, ...] = ()  # every selected case's name, before sharding


def _options(args: argparse.Namespace, registry: Registry, make: TargetMaker) -> _Options:
    """Validate everything before running anything; each mistake is one line, exit 2."""
    kinds = [ProviderKind.parse(kind) for kind in args.provider]
    if args.tempo <= 0:
        raise UsageError(f"--tempo {args.tempo:g}: expected seconds above 0, such as 0.02")
    warning = check_tempo(args.tempo, "--tempo")
    if args.timeout is not None:
        check_seconds(args.timeout, "--timeout")
    if args.seed is not None and not 0 <= args.seed < SEED_LIMIT:
        raise UsageError(f"--seed {args.seed}: expected a whole number from 0 to 2**63-1")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: run at least one case at a time (--jobs 1)")
    if not 0 <= args.reruns <= RERUNS_MAX:
        raise UsageError(f"--reruns {args.reruns}: expected 0 to {RERUNS_MAX}, such as 2")
    repeat = getattr(args, "repeat", None)
    if repeat is not None and repeat < 1:
        raise UsageError(f"--repeat {repeat}: expected 1 or more repetitions")
    defects = tuple(parse_defect(d).value for d in getattr(args, "defect", []))
    target = getattr(args, "target", "reference")
    if args.command == "mutants":
        mutants.check_door(target)
    via = getattr(args, "via", None)
    if via is not None:
        make = _via(make, via)
        if via == "proxy" and args.tls:
            raise UsageError(
                "--tls with --via proxy: the agent already speaks TLS to the proxy; drop --tls"
            )
    made = make(target, defects)  # a bad --target fails here, before any case runs
    specs = registry.select(args.selectors)
    if not specs:
        raise UsageError("the catalogue is empty: no scenario modules in the scenarios package")
    # A target that declares the wire formats it speaks runs on those unless told otherwise.
    spoken = getattr(made, "providers", None)
    providers = list(dict.fromkeys(kinds or spoken or ()))
    cases = plan_cases(specs, providers)
    if not cases:
        raise UsageError(
            f"none of the selected scenarios runs on {', '.join(providers)}; "
            "`cancel-harness list` shows each scenario's providers"
        )
    selection = tuple(c.name for c in cases)
    shard = parse_shard(args.shard) if args.shard is not None else None
    if shard is not None:
        cases = shard.select(cases)
        if args.seed is None and shard.count > 1:
            print(
                f"cancel-harness: warning: --shard {shard} without --seed: this shard draws "
                "its own seed; give every shard the same --seed so the merged report is one run",
                file=sys.stderr,
            )
    junit, json_path = getattr(args, "junit", None), args.json
    default_json = {"run": "results.json", "mutants": "mutants.json"}.get(args.command, "soak.json")
    reports = [("--json", json_path or DEFAULT_DIR / default_json, default_json)]
    if args.command in ("run", "soak"):
        reports.append(("--junit", junit or DEFAULT_DIR / "junit.xml", "junit.xml"))
    # The page goes beside the JSON report unless told otherwise.
    html_path = (
        getattr(args, "html", None) or (json_path or DEFAULT_DIR / "x").parent / "index.html"
    )
    reports.append(("--html", html_path, "index.html"))
    for flag, path, example in reports:
        check_report_path(path, flag, example)
    seed = args.seed if args.seed is not None else new_seed()
    until = getattr(args, "until_failure", False)
    config = RunConfig(
        seed=seed,
        target=target,
        defects=defects,
        tempo=args.tempo,
        timeout=args.timeout,
        jobs=args.jobs or _default_jobs(made),
        tls=args.tls,
        strict_side_traffic=getattr(args, "strict_side_traffic", False),
        calibrate=not getattr(args, "no_calibration", False),
        via=via,
        reruns=args.reruns if args.command in ("run", "soak") else DEFAULT_RERUNS,
    )
    if warning:
        print(f"cancel-harness: warning: {warning}", file=sys.stderr)
    return _Options(
        cases,
        config,
        make,
        junit,
        json_path,
        getattr(args, "verbose", False),
        html=html_path,
        repeat=repeat or (UNTIL_FAILURE_CAP if until else 1),
        until_failure=until,
        shuffle=getattr(args, "shuffle", False),
        reruns=args.reruns,
        shard=shard,
        selection=selection,
    )


def _execute(
    options: _Options,
    config: RunConfig,
    cases: Sequence[Case],
    *,
    live: bool,
    meter: Progress | None = None,
) -> RunResult:
    maker, spec, defects = options.make, config.target, config.defects
    runner = Runner(config, lambda: maker(spec, defects), verbose=options.verbose)

    def progress(result: CaseResult) -> None:
        if live:
            print(f"{result.status.value:<15} {result.name}  {result.duration:.2f}s", flush=True)
            if options.verbose:
                print(result.timeline, flush=True)
        elif meter is not None:
            meter.case_done(result)

    return run_guarded(runner, cases, progress)


def _run(options: _Options) -> int:
    config = options.config
    reps = options.repeat
    print(
        f"cancel-harness run: {len(options.cases)} case(s) against {config.target}"
        f"{' with ' + ','.join(config.defects) if config.defects else ''}, "
        f"seed {config.seed}, tempo {config.tempo:g}s"
        + (f", up to {reps} repetitions" if reps > 1 else "")
        + (", shuffled" if options.shuffle else ""),
        flush=True,
    )
    result = RunResult(config, config.target, "", repetitions=0, shuffled=options.shuffle)
    result.selection = list(options.selection)
    if options.shard is not None:
        result.shard = str(options.shard)
        print(
            f"shard {options.shard}: {len(options.cases)} of the {len(options.selection)} "
            "selected case(s)",
            flush=True,
        )
    total = None if options.until_failure else len(options.cases) * reps
    meter = Progress(total, label="run")
    for rep in range(reps if options.cases else 0):
        this = replace(config, seed=config.seed + rep, repetition=rep)
        cases = shuffled(options.cases, this.seed) if options.shuffle else options.cases
        done = _execute(options, this, cases, live=options.verbose, meter=meter)
        result.started = result.started or done.started
        result.finished, result.repetitions = done.finished, rep + 1
        result.wall_seconds += done.wall_seconds
        result.results.extend(done.results)
        if reps > 1:
            counts = ", ".join(f"{done.count(s)} {s.value}" for s in Status if done.count(s))
            meter.finish()
            print(f"repetition {rep + 1} (seed {this.seed}): {counts}", flush=True)
        failed = done.count(Status.FAILED) + done.count(Status.ERROR)
        if options.until_failure and failed:
            break
    meter.finish()
    details = failure_details(result)
    if details:
        print(f"\n{details}\n")
    print(summary_table(result), flush=True)
    code = result.exit_code
    if not _write_reports(
        [
            (lambda p: write_junit(result, p), options.junit or DEFAULT_DIR / "junit.xml"),
            (lambda p: write_json(result, p), options.json or DEFAULT_DIR / "results.json"),
            (lambda p: write_html(run_page(result), p), options.html or DEFAULT_DIR / "index.html"),
        ]
    ):
        return EXIT_USAGE
    unstarted = [r for r in result.results if r.status is Status.DID_NOT_START]
    if code == EXIT_USAGE and unstarted:
        # The agent never came up: a setup problem, not a verdict on its cancellation.
        print(f"cancel-harness: error: {unstarted[0].message}", file=sys.stderr)
    return code


def _write_reports(items: Sequence[tuple[Callable[[Path], Path], Path]]) -> bool:
    """Write each report; print where they went, and one error line for those that failed."""
    written, unwritten = [], []
    for writer, path in items:
        try:
            written.append(str(writer(path)))
        except OSError as exc:
            unwritten.append(f"cannot write {path}: {exc.strerror or exc}")
    if written:
        print(f"reports: {', '.join(written)}")
    if unwritten:
        print(f"cancel-harness: error: {'; '.join(unwritten)}", file=sys.stderr)
    return not unwritten


def _report(args: argparse.Namespace) -> int:
    """`report merge DIR... --out DIR`."""
    if args.report_command != "merge":
        raise UsageError("report: say what to do, such as `cancel-harness report merge DIR...`")
    _usable_dir(args.out, "--out")
    run, notes, missing = merge(args.dirs)
    run.notes = [*notes, *run.notes]
    for note in notes:
        print(note)
    details = failure_details(run)
    if details:
        print(f"\n{details}\n")
    print(summary_table(run), flush=True)
    out = args.out
    if not _write_reports(
        [
            (lambda p: write_junit(run, p), out / "junit.xml"),
            (lambda p: write_json(run, p), out / "results.json"),
            (
                lambda p: write_html(run_page(run, title="cancel-harness run (merged)"), p),
                out / "index.html",
            ),
        ]
    ):
        return EXIT_USAGE
    code = run.exit_code
    if missing and code in (EXIT_OK, EXIT_INDETERMINATE):
        print(
            f"cancel-harness: error: {len(missing)} selected case(s) are in no merged report",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return code


def all_defects() -> list[str]:
    """Every defect switch of the reference agent, in declaration order."""
    return [d.value for d in Defect]


def _soak(options: _Options, args: argparse.Namespace, registry: Registry) -> int:
    from harness import soak

    duration = soak.parse_duration(args.duration)
    if args.passes is not None and args.passes < 1:
        raise UsageError(f"--passes {args.passes}: expected 1 or more passes")
    config = options.config
    explorer = _soak_explorer(options, args, registry) if args.explore else None
    shard = f", shard {options.shard}" if options.shard is not None else ""
    print(
        f"cancel-harness soak: {len(options.cases)} case(s) against {config.target}"
        f"{' with ' + ','.join(config.defects) if config.defects else ''}{shard}, "
        f"seed {config.seed} (pass k: seed {config.seed}+k), tempo {config.tempo:g}s, "
        f"for {args.duration}"
        + (f" or {args.passes} passes" if args.passes else "")
        + (f"; then {args.explore} explored schedule(s) per pass" if args.explore else ""),
        flush=True,
    )
    maker = options.make
    progress = Progress(None, label="soak", deadline=time.monotonic() + duration, plain_every=None)

    def on_pass(k: int, done: soak.SoakResult) -> None:
        last = done.samples[-1]
        progress.line(
            f"pass {k} (seed {config.seed + k - 1}): {done.cases_run} case runs so far, "
            f"{done.count(Status.FAILED) + done.count(Status.ERROR)} failed, "
            f"{done.count(Status.INDETERMINATE)} indeterminate; fds {last['fds']}, "
            f"threads {last['threads']}, tasks {last['tasks']}, children {last['children']}, "
            f"rss {last['rss_kib'] / 1024:.1f} MiB; {last['t']:.0f} s"
        )

    if options.cases:
        result = soak.soak(
            options.cases,
            config,
            lambda c: lambda: maker(c.target, c.defects),
            duration=duration,
            passes=args.passes,
            on_result=progress.case_done,
            on_pass=on_pass,
            explore=explorer.run_pass if explorer is not None else None,
            explore_examples=explorer.examples if explorer is not None else 0,
            on_explore=lambda e: progress.line(
                f"pass {e['pass']} explore (seed {e['seed']}): {e['examples']} examples, "
                f"{e['rate']:.2f}/s, "
                + (
                    f"FOUND ({e['finding']['status']})"
                    if e["finding"]
                    else ("ERROR: " + e["error"] if e["error"] else "nothing found")
                )
            ),
        )
    else:  # an empty shard of a CI matrix: nothing to soak, and nothing wrong
        print(f"shard {options.shard}: none of the {len(options.selection)} selected case(s)")
        result = soak.SoakResult(config, duration)
    progress.finish()
    result.shard = str(options.shard) if options.shard is not None else ""
    failures = soak.failures_text(result)
    if failures:
        print(f"\n{failures}\n")
    print(soak.case_table(result))
    print()
    print(soak.leak_table(result))
    if result.explore_examples:
        print()
        print(soak.explore_table(result))
    for note in result.notes:
        print(note)
    print(soak.totals_line(result), flush=True)
    data = result.to_json()
    kept = [r for t in result.tallies.values() for r in t.failures[:3]]
    junit = options.junit or DEFAULT_DIR / "junit.xml"
    json_path = options.json or DEFAULT_DIR / "soak.json"
    html_path = options.html or DEFAULT_DIR / "index.html"
    if not _write_reports(
        [
            (lambda p: write(p, soak.junit_xml(result)), junit),
            (lambda p: write(p, json.dumps(data, indent=2) + "\n"), json_path),
            (lambda p: write_html(soak_page(data, kept), p), html_path),
        ]
    ):
        return EXIT_USAGE
    return result.exit_code


def _soak_explorer(options: _Options, args: argparse.Namespace, registry: Registry) -> SoakExplore:
    """`soak --explore N`: checked before the soak starts (one line, exit 2, if wrong)."""
    try:
        from harness.explore.passes import soak_explore
    except ImportError as exc:  # hypothesis is a dependency; a broken install says so
        raise UsageError(f"--explore needs hypothesis, which did not import: {exc}") from None
    config = options.config
    shard = options.shard
    try:
        return soak_explore(
            examples=args.explore,
            target=config.target,
            defects=config.defects,
            make=options.make,
            selectors=args.selectors,
            registry=registry,
            providers=[ProviderKind.parse(k) for k in args.provider],
            tempo=config.tempo,
            tls=config.tls,
            calibrate=config.calibrate,
            out_dir=(options.json or DEFAULT_DIR / "soak.json").parent / "explore",
            shard=(shard.index, shard.count) if shard is not None else None,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _mutants(options: _Options) -> int:
    # --defect narrows the defect list; the clean run has none switched on.
    defects = list(options.config.defects) or all_defects()
    base = replace(options.config, defects=())
    print(
        f"cancel-harness mutants: {len(options.cases)} case(s) x (clean + {len(defects)} "
        f"defects), seed {base.seed}, tempo {base.tempo:g}s, a catch must fail "
        f"{options.reruns + 1} of {options.reruns + 1} runs",
        flush=True,
    )

    meter = Progress(None, label="mutants")

    def execute(config: RunConfig, cases: Sequence[Case]) -> RunResult:
        return _execute(options, config, cases, live=False, meter=meter)

    def said(line: str) -> None:
        meter.finish()
        print(line, flush=True)

    kept: list[tuple[str, CaseResult]] = []
    matrix = mutants.prove(
        execute,
        options.cases,
        base,
        defects,
        reruns=options.reruns,
        progress=said,
        evidence=lambda row, result: kept.append((row, result)),
    )
    meter.finish()
    if options.shard is not None:
        matrix["shard"] = str(options.shard)
    print(f"\n{mutants.render(matrix)}")
    if not _write_reports(
        [
            (lambda p: mutants.write(matrix, p), options.json or DEFAULT_DIR / "mutants.json"),
            (
                lambda p: write_html(mutants_page(matrix, kept), p),
                options.html or DEFAULT_DIR / "index.html",
            ),
        ]
    ):
        return EXIT_USAGE
    return EXIT_OK if matrix["ok"] else EXIT_FAILED


def _default_jobs(target: Target) -> int:
    from harness.targets.reference import ReferenceTarget

    return IN_PROCESS_JOBS if type(target) is ReferenceTarget else DEFAULT_JOBS


def _via(make: TargetMaker, via: str) -> TargetMaker:
    """`make`, with --via overriding how the target reaches the provider."""
    from harness.targets import Via
    from harness.targets.build import route_via

    if make is make_target:
        return lambda spec, defects: make_target(spec, defects, via=via)
    return lambda spec, defects: route_via(make(spec, defects), Via(via), f"target '{spec}'")


def _proxy_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    proxy = commands.add_parser(
        "proxy",
        help="mitmproxy in front of the real provider hosts, for agents with a fixed base URL",
        description="Intercept api.openai.com, api.anthropic.com, "
        "generativelanguage.googleapis.com and *.openai.azure.com for an agent that honours "
        "HTTPS_PROXY; route them to a fake provider (default) or, when asked, the real "
        "hosts. Prints the proxy URL, its CA and the agent's environment (docs/proxy.md).",
    )
    proxy.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; "
        "anywhere else the proxy requires a token in its URL)",
    )
    proxy.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    proxy.add_argument(
        "--intercept",
        action="append",
        default=[],
        metavar="HOST",
        help="another host to intercept, or *.domain (repeatable)",
    )
    proxy.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="fault rule, as for serve (repeatable): for the embedded fake provider, or with "
        "--pass-through applied to the real provider's live stream",
    )
    proxy.add_argument(
        "--upstream",
        default=None,
        metavar="URL",
        help="route to a fake provider already running (e.g. cancel-harness serve's origin)",
    )
    proxy.add_argument(
        "--pass-through",
        action="store_true",
        help="send the provider hosts to the real services (needs network and real keys)",
    )
    proxy.add_argument(
        "--upstream-ca",
        type=Path,
        default=None,
        metavar="PEM",
        help="with --pass-through: trust this CA for the upstream hosts (default: certifi's)",
    )
    proxy.add_argument(
        "--upstream-for",
        action="append",
        default=[],
        metavar="HOST=URL",
        help="with --pass-through: send HOST's traffic to URL instead (a staging endpoint)",
    )
    proxy.add_argument(
        "--confdir",
        type=Path,
        default=None,
        help="keep the proxy's CA here, to trust it once (default: a fresh CA per run)",
    )
    proxy.add_argument(
        "--env-file", type=Path, default=None, help="write the agent's `export` lines here"
    )


def _proxy(args: argparse.Namespace) -> int:
    try:
        from harness.proxy.standalone import run_proxy
    except ImportError as exc:
        raise UsageError(
            f"cancel-harness proxy needs mitmproxy ({exc}); install the proxy extra: "
            "pip install -e '.[proxy]'"
        ) from None
    from fake_providers.faults import parse_rule
    from harness.proxy.standalone import parse_upstream_for

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is out of range; use 0-65535 (0 picks a free port)")
    for spec in args.fault:
        parse_rule(spec)  # fail before binding anything
    try:
        upstream_for = parse_upstream_for(args.upstream_for)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        anyio.run(
            lambda: run_proxy(
                host=args.host,
                port=args.port,
                faults=args.fault,
                intercept=args.intercept,
                pass_through=args.pass_through,
                upstream=args.upstream,
                confdir=args.confdir,
                env_file=args.env_file,
                upstream_ca=args.upstream_ca,
                upstream_for=upstream_for,
            )
        )
    except KeyboardInterrupt:
        print("stopped.", file=sys.stderr)
    except (ValueError, BaseExceptionGroup) as exc:  # ProxySetupError, FaultSpecError
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        if not isinstance(exc, ValueError):
            raise
        raise UsageError(str(exc)) from None
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from fake_providers.faults import parse_rule
    from fake_providers.limits import Limits
    from fake_providers.process import configure_server_process
    from harness.serve import serve

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is out of range; use 0-65535 (0 picks a free port)")
    for spec in args.fault:
        parse_rule(spec)  # fail before binding anything
    kinds = [ProviderKind.parse(kind) for kind in args.provider]
    for flag, value in (
        ("--request-timeout", args.request_timeout),
        ("--idle-timeout", args.idle_timeout),
    ):
        if not 0 < value <= 86_400:
            raise UsageError(f"{flag} {value:g}: give seconds above 0, at most 86400")
    limits = Limits(request_timeout=args.request_timeout, idle_timeout=args.idle_timeout)
    if args.tls_dir is not None:
        _usable_dir(args.tls_dir, "--tls-dir")
    if args.ledger_log is not None:
        _usable_file(args.ledger_log)
    from fake_providers.workers import MAX_WORKERS, WorkerStartError

    if not 1 <= args.workers <= MAX_WORKERS:
        raise UsageError(f"--workers {args.workers}: give 1 to {MAX_WORKERS} processes")
    uvloop = _uvloop_installed()
    if args.workers > 1:
        if args.tls:
            raise UsageError("--tls serves from one process for now: drop --workers or --tls")
        from harness.serve import serve_workers

        try:
            code = serve_workers(
                args.workers,
                host=args.host,
                port=args.port,
                faults=args.fault,
                providers=kinds,
                limits=limits,
                ledger_log=args.ledger_log,
                uvloop=uvloop,
            )
        except WorkerStartError as exc:
            raise UsageError(str(exc)) from None
        print("stopped.", file=sys.stderr)
        return EXIT_OK if code == 0 else EXIT_FAILED
    configure_server_process()
    try:
        anyio.run(
            lambda: serve(
                host=args.host,
                port=args.port,
                tls=args.tls,
                faults=args.fault,
                providers=kinds,
                tls_dir=args.tls_dir,
                limits=limits,
                ledger_log=args.ledger_log,
            ),
            backend_options={"use_uvloop": uvloop},
        )
    except KeyboardInterrupt:
        print("stopped.", file=sys.stderr)
    return EXIT_OK


def _uvloop_installed() -> bool:
    """serve runs on uvloop when it is installed (`pip install cancel-harness[fast]`)."""
    import importlib.util

    return importlib.util.find_spec("uvloop") is not None


def _usable_dir(path: Path, flag: str) -> None:
    """A directory we can write into (made if missing), or one line saying why not."""
    import os

    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} is a file; give a directory (it is made if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot make it ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: not writable; give a directory you can write to")


def _usable_file(path: Path) -> None:
    """--ledger-log: a file we can append to, in a directory that exists."""
    if path.is_dir():
        raise UsageError(f"--ledger-log {path} is a directory; give a file path")
    try:
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise UsageError(f"--ledger-log {path}: cannot write it ({exc.strerror or exc})") from None


def _explore_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    from harness.explore.options import add_arguments

    add_arguments(commands.add_parser("explore", help="search cancel points and fault schedules"))


def _explore(args: argparse.Namespace, catalogue: Registry | None, make: TargetMaker) -> int:
    """`explore`: its own module checks the options and reports (harness/explore/options.py)."""
    from harness.explore.options import run_explore

    return run_explore(args, catalogue, make)


if __name__ == "__main__":
    sys.exit(main())
