"""Explore from a project's own test suite: a property over schedules, with pytest.

    from hypothesis import Phase, given, settings, strategies as st

    @settings(max_examples=200, deadline=None, phases=[Phase.generate, Phase.shrink])
    @given(data=st.data())
    def test_cancellation_paths(cancel_harness_explorer, data):
        cancel_harness_explorer.check(data.draw(cancel_harness_explorer.schedules()))

`cancel_harness_explorer` (the pytest plugin's session fixture) is an `ExploreSession`: the
agent from the plugin's target options, started once and reused, as with
`cancel-harness explore`. `check` fails the example with the contract that broke, the
timeline and the replay command; hypothesis shrinks it and `--hypothesis-seed` replays.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Callable, Iterator, Sequence

from hypothesis import reject
from hypothesis import strategies as st

from fake_providers.kinds import ProviderKind
from harness.explore.command import kinds_for
from harness.explore.host import Host, Status, Verdict
from harness.explore.menu import Menu, menu_for
from harness.explore.schedule import Schedule
from harness.explore.strategies import schedules
from harness.scenario import Tempo, load_catalogue
from harness.target import Target


class ExploreFailure(AssertionError):
    """A schedule broke a contract; the message has the schedule, the timeline, the replay."""


class ExploreSession:
    """A started host plus what to draw; see the module docstring."""

    def __init__(
        self,
        host: Host,
        menu: Menu,
        kinds: Sequence[ProviderKind],
        *,
        replay: str = "cancel-harness explore",
        reruns: int = 2,
        shrink_budget: int = 100,
    ) -> None:
        self.host, self.menu, self.kinds = host, menu, tuple(kinds)
        self.replay_prefix, self.reruns, self.shrink_budget = replay, reruns, shrink_budget
        self._failed: dict[str, Verdict] = {}
        self._shrink_runs = 0

    def schedules(self) -> st.SearchStrategy[Schedule]:
        """Schedules this target can be driven through."""
        return schedules(self.menu, self.kinds)

    def check(self, schedule: Schedule) -> None:
        """Run the schedule; fail with what broke, or discard an example that could not be
        judged (the agent took a legitimate other path, or it stayed indeterminate).

        Once a schedule failed, shrinking runs at most `shrink_budget` more; after that a
        new schedule is skipped (and a known failure still fails), so hypothesis reports the
        smallest one found so far instead of shrinking for minutes."""
        text = schedule.to_text()
        verdict = self._failed.get(text)
        if verdict is None:
            if self._failed:
                if self._shrink_runs >= self.shrink_budget:
                    return
                self._shrink_runs += 1
            verdict = self._run(schedule)
        if verdict.status in (Status.DISCARDED, Status.INDETERMINATE):
            reject()
        if verdict.status in (Status.FAILED, Status.ERROR):
            self._failed[text] = verdict
            steps = "\n".join(f"  {n}. {line}" for n, line in enumerate(schedule.describe(), 1))
            raise ExploreFailure(
                f"{verdict.message}\nschedule ({schedule.profile}, {schedule.kind}):\n{steps}\n"
                f"{verdict.timeline}\nreplay: {self.replay_prefix} --replay "
                f"'{schedule.to_text()}'"
            )

    def _run(self, schedule: Schedule) -> Verdict:
        verdict = self.host.run(schedule)
        for _ in range(self.reruns):
            if verdict.status is not Status.INDETERMINATE:
                break
            verdict = self.host.run(schedule)
        return verdict


@contextlib.contextmanager
def open_session(
    make_target: Callable[[], Target],
    *,
    label: str,
    defects: Sequence[str] = (),
    selectors: Sequence[str] = (),
    providers: Sequence[str] = (),
    tempo: float = 0.02,
    seed: int = 0,
) -> Iterator[ExploreSession]:
    """A started host for `make_target`, narrowed by catalogue selectors, until exit."""
    made = make_target()
    registry = load_catalogue() if selectors else None
    menu = menu_for(made.capabilities, selectors, registry)
    kinds = kinds_for(made, providers)
    words = ["cancel-harness", "explore", "--target", label]
    for defect in defects:
        words += ["--defect", defect]
    replay = shlex.join([*words, "--tempo", f"{tempo:g}", "--seed", str(seed)])
    with Host(make_target, menu, tempo=Tempo(tempo), seed=seed) as host:
        yield ExploreSession(host, menu, kinds, replay=replay)
