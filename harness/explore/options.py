"""The `explore` sub-command's arguments, checked before anything runs.

Importing this module is cheap (no hypothesis): `cancel-harness --help` and the other
commands never pay for the search machinery. Every mistake is one line and exit 2.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.scenario import Registry
    from harness.target import Target

EXIT_USAGE = 2
DEFAULT_BUDGET = 100
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h)$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Search schedules of prompts, cancels and provider faults with hypothesis; shrink what "
        "breaks the agent to the smallest schedule, with a replay command and a scenario "
        "function. Exit 0: nothing found, 1: a counterexample, 2: bad usage."
    )
    parser.add_argument(
        "selectors",
        nargs="*",
        metavar="SELECTOR",
        help="narrow what is drawn to what these catalogue scenarios are about (ids, globs, "
        "incidents, tag:NAME), e.g. retry.* or tag:queue; default: everything",
    )
    parser.add_argument("--target", default="reference", help="the agent (default reference)")
    parser.add_argument(
        "--provider",
        action="append",
        default=[],
        metavar="KIND",
        help="provider kind to draw from (repeatable); default: the target's, else openai-chat",
    )
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--budget", type=int, default=None, metavar="N", help="examples to run")
    amount.add_argument(
        "--duration", default=None, metavar="TIME", help="explore for this long (90s, 10m, 2h)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed (default: random, printed)")
    parser.add_argument(
        "--tempo", type=float, default=0.02, metavar="SECONDS", help="the wait unit (0.02)"
    )
    parser.add_argument(
        "--defect", action="append", default=[], metavar="NAME", help="reference-agent defect"
    )
    parser.add_argument(
        "--replay", default=None, metavar="SCHEDULE", help="run one schedule explore printed"
    )
    parser.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="PATH",
        help="example database (default reports/explore/examples.json)",
    )
    parser.add_argument("--no-db", action="store_true", help="neither try nor save examples")
    parser.add_argument(
        "--shrink-budget", type=int, default=200, metavar="N", help="runs spent shrinking (200)"
    )
    parser.add_argument("--tls", action="store_true", help="the fake provider serves https")
    parser.add_argument(
        "--no-calibration",
        action="store_true",
        help="skip the plain turn per provider kind that teaches the harness the agent's turn "
        "calls (as with `run`)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print the scenario source")


def parse_duration(text: str) -> float:
    found = _DURATION.match(text.strip())
    if not found:
        raise ValueError(f"--duration {text}: expected a time with a unit, such as 90s, 10m, 2h")
    return float(found.group(1)) * {"s": 1, "m": 60, "h": 3600}[found.group(2)]


def run_explore(
    args: argparse.Namespace,
    catalogue: Registry | None,
    make: Callable[[str, Sequence[str]], Target],
) -> int:
    """Check the options, then explore; a user mistake is one line and exit 2."""
    from fake_providers.kinds import UnknownProviderKind
    from harness.cases import new_seed
    from harness.explore.command import ExploreOptions, kinds_for, run
    from harness.explore.examples import DEFAULT_PATH, ExampleDatabaseError
    from harness.explore.menu import menu_for
    from harness.explore.schedule import Schedule, ScheduleError
    from harness.explore.search import SearchConfig
    from harness.scenario import CatalogueError, UnknownSelectorError, load_catalogue
    from harness.targets import TargetSpecError
    from reference_agent.defects import UnknownDefectError, parse_defect

    try:
        if not args.tempo > 0:
            raise ValueError(f"--tempo {args.tempo:g}: expected seconds above 0, such as 0.02")
        if args.budget is not None and args.budget < 1:
            raise ValueError(f"--budget {args.budget}: run at least one example")
        if args.shrink_budget < 0:
            raise ValueError(f"--shrink-budget {args.shrink_budget}: expected 0 or more runs")
        duration = parse_duration(args.duration) if args.duration is not None else None
        defects = tuple(parse_defect(d).value for d in args.defect)
        target = make(args.target, defects)  # a bad --target fails here, before anything runs
        registry = catalogue if catalogue is not None else None
        if args.selectors and registry is None:
            registry = load_catalogue()
        menu = menu_for(target.capabilities, args.selectors, registry)
        kinds = kinds_for(target, args.provider)
        replay = Schedule.parse(args.replay) if args.replay is not None else None
        seed = args.seed if args.seed is not None else new_seed()
        budget = None if duration is not None else (args.budget or DEFAULT_BUDGET)
        options = ExploreOptions(
            target=args.target,
            defects=defects,
            make_target=lambda: make(args.target, defects),
            menu=menu,
            kinds=kinds,
            search=SearchConfig(seed, budget, duration, shrink_budget=args.shrink_budget),
            tempo=args.tempo,
            tls=args.tls,
            calibrate=not args.no_calibration,
            selectors=tuple(args.selectors),
            replay=replay,
            db=None if args.no_db else (args.db or DEFAULT_PATH),
            verbose=args.verbose,
        )
        if options.db is not None:
            from harness.explore.examples import load

            load(options.db)  # an unreadable database is a usage error, before any run
    except (
        ValueError,
        UnknownProviderKind,
        UnknownSelectorError,
        UnknownDefectError,
        TargetSpecError,
        CatalogueError,
        ScheduleError,
        ExampleDatabaseError,
    ) as exc:
        print(f"cancel-harness: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run(options)
