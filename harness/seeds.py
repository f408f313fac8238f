"""Every random choice of a run comes from its seed, so a replay command replays.

The run seed gives each case its own seed, stable under selection and order: the seed of
`esc.mid-stream[anthropic]` in run 7 is the same whether it runs alone or with the whole
catalogue, first or last. The case seed drives `ctx.rng`, the fault plans' jitter (a plan
without its own `seed=`), and the agent's own random choices (`AgentSettings.seed`, e.g.
the reference agent's retry jitter). `--shuffle` orders cases by the run seed.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import replace

from fake_providers.faults import FaultPlan
from fake_providers.rules import PlanResolver, PlanSelection, RequestView

SEED_LIMIT = 2**63  # --seed is 0 <= seed < this


def case_seed(run_seed: int, case_name: str) -> int:
    """A positive 31-bit seed for one case of a run (0 is never returned: it means unset)."""
    digest = hashlib.sha256(f"{run_seed}:{case_name}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (2**31 - 1) + 1


def shuffled[T](items: Sequence[T], run_seed: int) -> list[T]:
    """`items` in an order drawn from the run seed (the same seed, the same order)."""
    out = list(items)
    random.Random(f"order:{run_seed}").shuffle(out)
    return out


class SeededResolver(PlanResolver):
    """A provider's rule table that gives every plan without a seed of its own the case seed.

    Installed by the runner on the providers it starts, so the jitter of `pace=..,jitter=..`
    follows the run seed whoever added the rule (scenario, control API or model name).
    """

    def __init__(self, seed: int, default: FaultPlan | None = None) -> None:
        super().__init__(default)
        self.seed = seed

    def select(self, view: RequestView) -> PlanSelection:
        chosen = super().select(view)
        if chosen.plan.seed or not _random(chosen.plan):
            return chosen
        return replace(chosen, plan=replace(chosen.plan, seed=self.seed))


def _random(plan: FaultPlan) -> bool:
    """Does the plan make random choices (so its seed matters)?"""
    return any(getattr(step, "jitter", 0) for step in plan.steps)
