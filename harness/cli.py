"""The `cancel-harness` command line: list, run, mutants, serve.

Exit codes (harness/cases.py, `RunResult.exit_code`): 0 every case passed (or was not
applicable); 1 a check failed or the harness broke; 2 bad usage or setup: a one-line error
before any case runs, a target that did not start, or a report that could not be written
(the summary is printed first, so no result is lost); 3 nothing failed, but some case stayed
indeterminate after its re-runs (the machine was too loaded to judge it: see harness/timing.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

import anyio

from fake_providers import FaultSpecError, ProviderStartError
from fake_providers.kinds import ProviderKind, UnknownProviderKind
from harness import mutants
from harness.cases import (
    EXIT_FAILED,
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
from harness.report import (
    DEFAULT_DIR,
    ReportPathError,
    check_report_path,
    failure_details,
    summary_table,
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
from harness.target import Target
from harness.targets import TargetSpecError, make_target
from reference_agent.defects import Defect, UnknownDefectError, parse_defect

DEFAULT_JOBS = 2
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
    listing = commands.add_parser("list", help="show the scenario catalogue")
    listing.add_argument("selectors", nargs="*", metavar="SELECTOR")
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
    run.add_argument("-v", "--verbose", action="store_true", help="every case, full timelines")
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
    _serve_parser(commands)
    return parser


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
        "--jobs",
        type=int,
        default=DEFAULT_JOBS,
        metavar="N",
        help=f"cases run at once, each with its own provider and agent (default {DEFAULT_JOBS})",
    )


def _serve_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
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
        if args.command not in ("list", "run", "mutants"):
            parser.print_help()
            return EXIT_USAGE
        registry = catalogue if catalogue is not None else load_catalogue()
        if args.command == "list":
            print(catalogue_table(registry.select(args.selectors)))
            return EXIT_OK
        options = _options(args, registry, targets or make_target)
        if args.command == "run":
            return _run(options)
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
    ) as exc:
        print(f"cancel-harness: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def catalogue_table(specs: Sequence[ScenarioSpec]) -> str:
    """`cancel-harness list`: id, incident, tags, providers, catches."""
    if not specs:
        return "the catalogue is empty: no scenario modules in the scenarios package yet"
    header = ("ID", "INCIDENT", "TAGS", "PROVIDERS", "CATCHES")
    rows = [
        (
            s.id,
            s.incident,
            ",".join(s.tags) or "-",
            "all" if set(s.providers) == set(ALL_KINDS) else ",".join(s.providers),
            ",".join(s.catches) or "-",
        )
        for s in specs
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(4)]
    return "\n".join(
        "  ".join(f"{cell:<{widths[i]}}" for i, cell in enumerate(row[:4])) + "  " + row[4]
        for row in (header, *rows)
    )


@dataclass(frozen=True, slots=True)
class _Options:
    cases: list[Case]
    config: RunConfig
    make: TargetMaker
    junit: Path | None
    json: Path | None
    verbose: bool
    repeat: int = 1
    until_failure: bool = False
    shuffle: bool = False
    reruns: int = DEFAULT_RERUNS


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
    if args.jobs < 1:
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
    make(target, defects)  # a bad --target fails here, before any case runs
    specs = registry.select(args.selectors)
    if not specs:
        raise UsageError("the catalogue is empty: no scenario modules in the scenarios package")
    providers = list(dict.fromkeys(kinds))
    cases = plan_cases(specs, providers)
    if not cases:
        raise UsageError(
            f"none of the selected scenarios runs on {', '.join(providers)}; "
            "`cancel-harness list` shows each scenario's providers"
        )
    junit, json_path = getattr(args, "junit", None), args.json
    default_json = "results.json" if args.command == "run" else "mutants.json"
    reports = [("--json", json_path or DEFAULT_DIR / default_json, default_json)]
    if args.command == "run":
        reports.append(("--junit", junit or DEFAULT_DIR / "junit.xml", "junit.xml"))
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
        jobs=args.jobs,
        tls=args.tls,
        reruns=args.reruns if args.command == "run" else DEFAULT_RERUNS,
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
        repeat=repeat or (UNTIL_FAILURE_CAP if until else 1),
        until_failure=until,
        shuffle=getattr(args, "shuffle", False),
        reruns=args.reruns,
    )


def _execute(
    options: _Options, config: RunConfig, cases: Sequence[Case], *, live: bool
) -> RunResult:
    maker, spec, defects = options.make, config.target, config.defects
    runner = Runner(config, lambda: maker(spec, defects), verbose=options.verbose)

    def progress(result: CaseResult) -> None:
        if live:
            print(f"{result.status.value:<15} {result.name}  {result.duration:.2f}s", flush=True)
            if options.verbose:
                print(result.timeline, flush=True)

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
    for rep in range(reps):
        this = replace(config, seed=config.seed + rep, repetition=rep)
        cases = shuffled(options.cases, this.seed) if options.shuffle else options.cases
        done = _execute(options, this, cases, live=options.verbose)
        result.started = result.started or done.started
        result.finished, result.repetitions = done.finished, rep + 1
        result.wall_seconds += done.wall_seconds
        result.results.extend(done.results)
        if reps > 1:
            counts = ", ".join(f"{done.count(s)} {s.value}" for s in Status if done.count(s))
            print(f"repetition {rep + 1} (seed {this.seed}): {counts}", flush=True)
        failed = done.count(Status.FAILED) + done.count(Status.ERROR)
        if options.until_failure and failed:
            break
    details = failure_details(result)
    if details:
        print(f"\n{details}\n")
    print(summary_table(result), flush=True)
    code = result.exit_code
    written, unwritten = [], []
    for write, path in (
        (write_junit, options.junit or DEFAULT_DIR / "junit.xml"),
        (write_json, options.json or DEFAULT_DIR / "results.json"),
    ):
        try:
            written.append(str(write(result, path)))
        except OSError as exc:
            unwritten.append(f"cannot write {path}: {exc.strerror or exc}")
    if written:
        print(f"reports: {', '.join(written)}")
    if unwritten:
        print(f"cancel-harness: error: {'; '.join(unwritten)}", file=sys.stderr)
        return EXIT_USAGE
    unstarted = [r for r in result.results if r.status is Status.DID_NOT_START]
    if code == EXIT_USAGE and unstarted:
        # The agent never came up: a setup problem, not a verdict on its cancellation.
        print(f"cancel-harness: error: {unstarted[0].message}", file=sys.stderr)
    return code


def all_defects() -> list[str]:
    """Every defect switch of the reference agent, in declaration order."""
    return [d.value for d in Defect]


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

    def execute(config: RunConfig, cases: Sequence[Case]) -> RunResult:
        return _execute(options, config, cases, live=False)

    matrix = mutants.prove(
        execute,
        options.cases,
        base,
        defects,
        reruns=options.reruns,
        progress=lambda line: print(line, flush=True),
    )
    print(f"\n{mutants.render(matrix)}")
    path = options.json or DEFAULT_DIR / "mutants.json"
    try:
        print(f"report: {mutants.write(matrix, path)}")
    except OSError as exc:
        print(f"cancel-harness: error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK if matrix["ok"] else EXIT_FAILED


def _serve(args: argparse.Namespace) -> int:
    from fake_providers.faults import parse_rule
    from fake_providers.process import configure_server_process
    from harness.serve import serve

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is out of range; use 0-65535 (0 picks a free port)")
    for spec in args.fault:
        parse_rule(spec)  # fail before binding anything
    kinds = [ProviderKind.parse(kind) for kind in args.provider]
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
            )
        )
    except KeyboardInterrupt:
        print("stopped.", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
