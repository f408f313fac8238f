"""Running cases on a worker thread, so a target that swallows cancellation cannot hang us.

The runner keeps a deadline per live case (start-up, then the case timeout, plus the stop
limit); a case still running `slack` s past it is abandoned with its timeline so far.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence

import anyio

from harness.calibration import calibration_budget
from harness.cases import Case, CaseResult, RunResult, Status, now_iso
from harness.runner import Runner


def run_guarded(
    runner: Runner,
    cases: Sequence[Case],
    on_result: Callable[[CaseResult], None] | None = None,
    *,
    slack: float = 10.0,
) -> RunResult:
    """Run on a worker thread, so a target that swallows cancellation cannot hang the caller.

    A case still running `slack` s after its deadline (start-up, then case timeout, plus the
    stop limit) is abandoned with its timeline so far; cases that had not finished by then
    are reported as not run (errors). Results are delivered in case order.
    """
    inbox: queue.Queue[tuple[int, CaseResult] | BaseException | None] = queue.Queue()
    calibrated = threading.Event()

    def work() -> None:
        try:
            if runner.config.calibrate:
                anyio.run(runner.calibrate, cases)
            calibrated.set()
            anyio.run(runner.run_each, cases, lambda i, r: inbox.put((i, r)))
        except BaseException as exc:  # handed to the caller's thread
            inbox.put(exc)
        else:
            inbox.put(None)
        finally:
            calibrated.set()

    threading.Thread(target=work, name="cancel-harness-run", daemon=True).start()
    run = RunResult(runner.config, runner.config.target, now_iso())
    began = time.perf_counter()
    limit = calibration_budget(runner.target_factory) + slack
    if not calibrated.wait(limit):
        why = (
            f"not run: the plain calibration turn did not end within {limit:g} s; the target "
            "could not be stopped (it ignores cancellation), so the run was abandoned"
        )
        run.results = [runner._result(c, time.perf_counter(), Status.ERROR, why) for c in cases]
        if on_result is not None:
            for result in run.results:
                on_result(result)
        run.finished = now_iso()
        return run
    finished: dict[int, CaseResult] = {}

    def deliver(result: CaseResult) -> None:
        run.results.append(result)
        if on_result is not None:
            on_result(result)

    while len(run.results) < len(cases):
        try:
            item = inbox.get(timeout=0.2)
        except queue.Empty:
            stuck = runner.overdue(slack)
            if stuck is None:
                continue
            for i in range(len(run.results), len(cases)):
                case = cases[i]
                if i in finished:
                    deliver(finished.pop(i))
                elif case is stuck:
                    deliver(runner.abandoned(case))
                else:
                    why = f"not run: the run was abandoned when {stuck.name} hung"
                    deliver(runner._result(case, time.perf_counter(), Status.ERROR, why))
            break
        if isinstance(item, BaseException):
            raise item
        if item is None:
            break
        index, result = item
        finished[index] = result
        while len(run.results) in finished:
            deliver(finished.pop(len(run.results)))
    run.finished = now_iso()
    run.wall_seconds = time.perf_counter() - began
    run.notes = [c.describe() for c in runner.calibrations.values()]
    return run
