"""The long random check of explore's strategies, which the test suite runs derandomized.

    python -m benchmarks.fuzz_strategies [--examples 2000] [--seed S] [--menus 24]

For the full menu, the cancel-only menu and `--menus` random menus (random capabilities,
random profiles), over every provider kind, it draws `--examples` schedules per menu with a
random seed and checks three things a user relies on:
- every drawn schedule is `drawable` for its own menu (so the step shrinker may run it);
- a schedule that uses what a smaller menu lacks (a follow-up, a named cancel, a second
  session, a second cancel, an error, a tool, a paced stream, a caller that leaves, a
  profile) is *not* drawable there, so a kept counterexample is never replayed on a target
  that cannot do it;
- its text form parses back to the same schedule (the example database and replay).
Stops at the first failure and prints the schedule and the seed that drew it; exit 1.
Writes reports/bench/fuzz_strategies.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings

from fake_providers.kinds import ProviderKind
from harness.explore.menu import Menu, full_menu
from harness.explore.schedule import Profile, Schedule
from harness.explore.strategies import ITEM_WORDS, drawable, schedules, uses
from harness.target import Capability

REPORT = Path("reports/bench/fuzz_strategies.json")
ITEMS = tuple(ITEM_WORDS)


def offers(menu: Menu) -> set[str]:
    return {f"profile:{p}" for p in menu.profiles} | {i for i in ITEMS if getattr(menu, i)}


def needs(schedule: Schedule) -> set[str]:
    return {f"profile:{schedule.profile}", *uses(schedule)}


def random_menu(rng: random.Random) -> Menu:
    profiles = [p for p in Profile if rng.random() < 0.5] or [Profile.PLAIN]
    flags = {f.name: rng.random() < 0.5 for f in fields(Menu) if f.name != "profiles"}
    return Menu(profiles=tuple(profiles), **flags)


def smaller(menu: Menu, rng: random.Random) -> Menu:
    """`menu` with one item or one profile taken away."""
    on = [i for i in ITEMS if getattr(menu, i)]
    if on and (len(menu.profiles) == 1 or rng.random() < 0.7):
        return replace(menu, **{rng.choice(on): False})
    gone = rng.choice(menu.profiles)
    return replace(menu, profiles=tuple(p for p in menu.profiles if p != gone))


def check_menu(menu: Menu, examples: int, run_seed: int, rng: random.Random) -> int:
    less = smaller(menu, rng)
    drawn = 0

    @seed(run_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(schedules(menu, kinds=list(ProviderKind)))
    def check(schedule: Schedule) -> None:
        nonlocal drawn
        drawn += 1
        told = "\n".join(schedule.describe())
        assert drawable(schedule, menu), f"drawn but not drawable for {menu}:\n{told}"
        beyond = needs(schedule) - offers(less)
        if beyond:
            assert not drawable(schedule, less), f"uses {beyond}, drawable for {less}:\n{told}"
        assert Schedule.parse(schedule.to_text()) == schedule, f"text does not parse:\n{told}"

    check()
    return drawn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="schedules per menu")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--menus", type=int, default=24, help="random menus besides two fixed")
    args = parser.parse_args(argv)
    run_seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(run_seed)
    menus = [full_menu(Capability), full_menu({Capability.CANCEL})]
    menus += [random_menu(rng) for _ in range(args.menus)]
    started, drawn = time.monotonic(), 0
    for n, menu in enumerate(menus):
        try:
            drawn += check_menu(menu, args.examples, run_seed + n, rng)
        except AssertionError as failed:
            print(f"FAILED (seed {run_seed}, menu {n}): {failed}", file=sys.stderr)
            return 1
    took = time.monotonic() - started
    print(f"{drawn} schedules over {len(menus)} menus, seed {run_seed}: all held ({took:.0f} s)")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    figures = {"seed": run_seed, "menus": len(menus), "schedules": drawn, "seconds": took}
    REPORT.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
