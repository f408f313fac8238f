"""How long the harness could not watch: stalls measured during every case, and `Indeterminate`.

A timed check ("the client closed within 40 ms of the cancel") is only fair if the harness,
the fake provider and the agent had the CPU during that window. On a loaded CI runner they
may not: a 50 ms run-queue wait before the agent even sees the cancel is the machine's
doing, not the agent's. So every case measures, as intervals of wall time (monotonic ns):

- each event loop the harness runs (the runner's, the provider thread's): a heartbeat timer
  every 2 ms; the time a due heartbeat waited to run is a stall (CPU starvation, the GIL, a
  blocking call: anything that kept that loop from observing or acting);
- agent processes (children of the harness, e.g. the ACP or HTTP agent): the time they
  waited in the scheduler's run queue (`/proc/PID/schedstat`, Linux; elsewhere not measured).

`StallMonitor.stalled_ns(t0, t1)` is the union of the loops' stall intervals within [t0, t1]
plus the agent processes' waits sampled in it. A check whose bound was missed, but whose
late observation fits within the bound plus that stall, raises `Indeterminate` (so does a
turn that ran out of its own deadline while stalled for half of it): the runner re-runs the
case. A connection still open at the end of its (stall-extended) watch window is a failure
whatever the load: a leak is never excused.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

import anyio

HEARTBEAT = 0.002  # s between heartbeats on a watched loop
LAG_FLOOR_NS = 1_500_000  # a heartbeat later than this is a stall (epoll rounds up to 1 ms)
TOLERANCE_NS = 5_000_000  # what a heartbeat can miss of a stall: one period, plus rounding
CHILD_PERIOD = 0.005  # s between /proc samples of agent processes
CHILD_FLOOR_NS = 50_000  # run-queue waits below this per sample are noise
HORIZON_NS = 300 * 10**9  # stall records older than this are forgotten
EXTENSION_CAP = 5.0  # a watch window grows by at most this much for stalls (s)


class Indeterminate(Exception):
    """A timed bound was missed, but the harness's own measured stall explains it.

    Not a failure and never a pass: the runner re-runs the case a bounded number of times
    and reports `indeterminate` if no run could judge it.
    """


class StallLog:
    """When one source (a loop, the agent processes) stalled.

    A heartbeat knows exactly when its loop could not run: solid intervals. A sampler of
    cumulative run-queue wait only knows how much waiting happened between two samples:
    spread records, counted pro rata of their overlap with a window.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._spread: list[tuple[int, int, int]] = []  # (start, end, ns waited within), by end
        # When the heartbeat is next due: a heartbeat overdue now is a stall in progress
        # (its callback may not have run yet even though the stall has already happened).
        self.due_ns: int | None = None
        # For a sampled source: take a sample now, so a judgment made right after a stall
        # does not wait for a sampler thread that was itself starved.
        self.refresh: Callable[[], None] | None = None

    def add(self, start_ns: int, end_ns: int) -> None:
        if end_ns <= start_ns:
            return
        with self._lock:
            at = bisect.bisect_right(self._starts, start_ns)
            self._starts.insert(at, start_ns)
            self._ends.insert(at, end_ns)
            if len(self._starts) > 4096 and self._ends[0] < end_ns - HORIZON_NS:
                keep = bisect.bisect_left(self._starts, end_ns - HORIZON_NS)
                del self._starts[:keep], self._ends[:keep]

    def add_spread(self, start_ns: int, end_ns: int, waited_ns: int) -> None:
        """`waited_ns` of stall happened somewhere in [start, end] (sampled in order)."""
        if end_ns <= start_ns or waited_ns <= 0:
            return
        with self._lock:
            self._spread.append((start_ns, end_ns, min(waited_ns, end_ns - start_ns)))
            if len(self._spread) > 8192 and self._spread[0][1] < end_ns - HORIZON_NS:
                del self._spread[:4096]

    def within(self, t0_ns: int, t1_ns: int) -> list[tuple[int, int]]:
        """The solid intervals clipped to [t0, t1]."""
        with self._lock:
            upto = bisect.bisect_right(self._starts, t1_ns)
            pairs = list(zip(self._starts[:upto], self._ends[:upto], strict=True))
        due = self.due_ns
        if due is not None and time.monotonic_ns() - due > LAG_FLOOR_NS:
            pairs.append((due, time.monotonic_ns()))
        return [(max(s, t0_ns), min(e, t1_ns)) for s, e in pairs if e > t0_ns and s < t1_ns]

    def spread_ns(self, t0_ns: int, t1_ns: int) -> int:
        """The spread records' share of [t0, t1], pro rata of their overlap with it."""
        with self._lock:
            records = list(self._spread)
        total = 0.0
        for start, end, waited in records:
            overlap = min(end, t1_ns) - max(start, t0_ns)
            if overlap > 0:
                total += waited * overlap / (end - start)
        return int(total)

    def measure(self, t0_ns: int, t1_ns: int) -> int:
        return union_ns(self.within(t0_ns, t1_ns)) + self.spread_ns(t0_ns, t1_ns)


def union_ns(intervals: Iterable[tuple[int, int]]) -> int:
    """Total length of the union of the intervals."""
    total, reach = 0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


async def heartbeat(log: StallLog, period: float = HEARTBEAT) -> None:
    """Run forever on a loop, logging every time a due heartbeat could not run on time."""
    period_ns = int(period * 1e9)
    try:
        while True:
            due = log.due_ns = time.monotonic_ns() + period_ns
            await anyio.sleep(period)
            late = time.monotonic_ns() - due
            if late > LAG_FLOOR_NS:
                log.add(due, due + late)
    finally:
        log.due_ns = None


class StallMonitor:
    """One case's view of the stalls: its loops' heartbeats and the agent processes.

    The runner starts and stops it and hands it to the scenario context as `ctx.stalls`.
    """

    def __init__(self, logs: Sequence[StallLog] = ()) -> None:
        self.logs = tuple(logs)

    def stalled_ns(self, t0_ns: int, t1_ns: int) -> int:
        """How long, within [t0, t1], the harness, the provider or the agent could not run.

        The loops' stalls (known intervals) count once where they overlap; the agent
        processes' run-queue waits (known only per sample) are added to them, as another
        step of the chain from cancel to close. Never more than the span itself.
        """
        for log in self.logs:
            if log.refresh is not None:
                log.refresh()
        loops = union_ns(i for log in self.logs for i in log.within(t0_ns, t1_ns))
        sampled = sum(log.spread_ns(t0_ns, t1_ns) for log in self.logs)
        return min(max(0, t1_ns - t0_ns), loops + sampled)

    def describe(self, t0_ns: int, t1_ns: int) -> str:
        """`the harness loop 48 ms, the agent process 12 ms` (sources that stalled)."""
        parts = []
        for log in self.logs:
            ns = log.measure(t0_ns, t1_ns)
            if ns >= LAG_FLOOR_NS:
                parts.append(f"{log.source} {ns / 1e6:.0f} ms")
        return ", ".join(parts) or "nothing"

    def excuses(self, t0_ns: int, bound: float, seen_ns: int, since_ns: int | None = None) -> bool:
        """Would `seen_ns` have been within `bound` s of `t0_ns` but for the measured stall?

        Stalls count from `since_ns` (default `t0_ns`): when the agent's own clock for the
        bound started, if that was earlier (a deadline the agent counts from a submit).
        """
        stalled = self.stalled_ns(min(t0_ns, since_ns or t0_ns), seen_ns)
        if stalled < LAG_FLOOR_NS:
            return False
        return seen_ns - t0_ns - stalled <= int(bound * 1e9) + TOLERANCE_NS

    def judge_late(
        self,
        t0_ns: int,
        bound: float,
        seen_ns: Sequence[int | None],
        failure: str,
        *,
        since_ns: int | None = None,
    ) -> str:
        """Raise `Indeterminate` if every late observation is explained by a stall.

        `seen_ns` are when each late thing happened (a close, a last write); None means it
        never did (still open): that is never excused. Otherwise returns the failure, with
        the stall measured in that span when there was any, for the caller to raise.
        """
        start = min(t0_ns, since_ns or t0_ns)
        last = max((t for t in seen_ns if t is not None), default=time.monotonic_ns())
        stalled = self.stalled_ns(start, last)
        measured = (
            f"the harness measured {stalled / 1e6:.0f} ms of stall in that span "
            f"({self.describe(start, last)})"
        )
        if (
            seen_ns
            and all(t is not None for t in seen_ns)
            and self.excuses(t0_ns, bound, last, since_ns)
        ):
            raise Indeterminate(
                f"{failure}; but {measured}, which explains the delay: this run cannot judge it"
            )
        if stalled < LAG_FLOOR_NS:
            return failure
        return f"{failure} ({measured}, which does not explain it)"

    def judge_deadline(self, started_ns: int, ended_ns: int, deadline: float, failure: str) -> str:
        """A turn ran out of its own deadline: raise `Indeterminate` if, for half of that
        deadline or more, the harness or the agent could not run (a healthy turn needs far
        less than its deadline, so the stall may well be why it ran out). Else the failure,
        with the stall measured, for the caller to raise."""
        stalled = self.stalled_ns(started_ns, ended_ns)
        measured = (
            f"the harness measured {stalled / 1e6:.0f} ms of stall during that turn "
            f"({self.describe(started_ns, ended_ns)})"
        )
        if stalled >= deadline * 1e9 / 2:
            raise Indeterminate(
                f"{failure}; but {measured}, half its {deadline * 1000:g} ms deadline or more: "
                "this run cannot judge it"
            )
        return failure if stalled < LAG_FLOOR_NS else f"{failure} ({measured})"

    async def watch[T](
        self, wait: Callable[[float], Awaitable[T | None]], seconds: float
    ) -> T | None:
        """`wait(seconds)`; while it finds nothing, extend by the stall measured meanwhile.

        A watch window is how long the agent is given; time the harness or the agent could
        not run does not count against it (up to `EXTENSION_CAP` more).
        """
        began = time.monotonic_ns()
        result = await wait(seconds)
        while not result:
            now = time.monotonic_ns()
            extra = min(EXTENSION_CAP * 1e9, self.stalled_ns(began, now))
            remaining = (began + seconds * 1e9 + extra - now) / 1e9
            if remaining <= 0:
                return result
            result = await wait(remaining)
        return result


NO_STALLS = StallMonitor()  # measures nothing: for contexts built outside the runner


def clock_start(t_ns: int, harness_steps: Iterable[int]) -> int:
    """The latest harness step (submit, cancel) at or before `t_ns`.

    A bound measured from a T the scenario computed (a turn deadline, the last byte) runs
    on the agent's own clock, which started after that step; a stall since then counts.
    """
    return max((s for s in harness_steps if s <= t_ns), default=t_ns)


# ------------------------------------------------------------------------- agent processes


def _read_int_field(path: str, index: int) -> int | None:
    try:
        with open(path, "rb") as f:
            return int(f.read().split()[index])
    except (OSError, ValueError, IndexError):
        return None


def _children() -> set[int]:
    """Direct children of this process (agents the targets started), from /proc."""
    pids: set[int] = set()
    with contextlib.suppress(OSError):
        for tid in os.listdir("/proc/self/task"):
            with (
                contextlib.suppress(OSError, ValueError),
                open(f"/proc/self/task/{tid}/children", "rb") as f,
            ):
                pids.update(int(p) for p in f.read().split())
    return pids


class ChildSampler:
    """A thread sampling the run-queue wait of this process's children into one log.

    Process-wide and reference-counted: the first case that needs it starts it, the last
    one stops it. Where /proc has no schedstat it logs nothing.
    """

    _lock = threading.Lock()
    _users = 0
    _thread: threading.Thread | None = None
    _stop = threading.Event()
    log = StallLog("the agent process")

    @classmethod
    def available(cls) -> bool:
        return _read_int_field("/proc/self/schedstat", 1) is not None

    @classmethod
    def acquire(cls) -> StallLog:
        with cls._lock:
            cls._users += 1
            if cls._thread is None and cls.available():
                cls._stop = threading.Event()
                cls._thread = threading.Thread(
                    target=cls._sample, args=(cls._stop,), name="cancel-harness-stalls", daemon=True
                )
                cls._thread.start()
        return cls.log

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users == 0 and cls._thread is not None:
                cls._stop.set()
                cls._thread = None

    _seen: dict[int, tuple[int, int]] = {}  # pid -> (sampled at, cumulative run delay)
    _sampling = threading.Lock()
    # The whole machine's CPU pressure (Linux PSI, "some": time in which at least one task
    # waited for a CPU). Not a stall of ours, so no check counts it as one; it only keeps
    # the harness from calling an agent too slow while the machine was overloaded.
    pressure = StallLog("the machine's CPU pressure")
    _pressure_seen: tuple[int, int] | None = None

    @classmethod
    def _sample(cls, stop: threading.Event) -> None:
        while not stop.wait(CHILD_PERIOD):
            cls.sample_now()

    @classmethod
    def sample_now(cls) -> None:
        """One sample of every child, from whichever thread asks (the sampler, or a check
        about to judge a window that just ended)."""
        with cls._sampling:
            now = time.monotonic_ns()
            for start, end, waited in sample_children(cls._seen, _children(), now):
                cls.log.add_spread(start, end, waited)
            total = _cpu_pressure_ns()
            if total is not None:
                before, cls._pressure_seen = cls._pressure_seen, (now, total)
                if before is not None and total > before[1]:
                    cls.pressure.add_spread(before[0], now, total - before[1])

    @classmethod
    def overloaded(cls, t0_ns: int, t1_ns: int) -> int:
        """How long, within [t0, t1], the machine had tasks waiting for a CPU (PSI; 0 where
        the kernel does not say)."""
        cls.sample_now()
        return min(t1_ns - t0_ns, cls.pressure.spread_ns(t0_ns, t1_ns))


def sample_children(
    seen: dict[int, tuple[int, int]],
    pids: set[int],
    now: int,
    read: Callable[[int], tuple[int, int | None] | None] | None = None,
) -> list[tuple[int, int, int]]:
    """One sample of the children's run-queue waits: `(start, end, ns waited)` spreads.

    `seen` (pid -> when last sampled, cumulative wait then) is updated in place; gone pids
    are dropped. A child seen for the first time counts its wait since it started (an agent
    starved in its first milliseconds is starved all the same), so the children are looked
    for at every sample: a case often begins right after its agent started.
    `read(pid)` gives (cumulative run delay ns, start time as monotonic ns or None).
    """
    read = read or _schedstat
    for gone in [p for p in seen if p not in pids]:
        del seen[gone]
    spreads = []
    for pid in pids:
        found = read(pid)
        if found is None:
            continue
        delay, started = found
        before = seen.get(pid)
        seen[pid] = (now, delay)
        if before is None:
            before = (started, 0) if started is not None and started < now else None
        if before is not None and delay - before[1] > CHILD_FLOOR_NS:
            # When in between it waited is unknown (this thread may itself have been
            # starved for long): spread it over the whole gap.
            spreads.append((before[0], now, delay - before[1]))
    return spreads


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_pressure_ns() -> int | None:
    """Cumulative CPU pressure ("some total", µs in /proc/pressure/cpu) in ns, or None."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/pressure/cpu", "rb") as f:
            some = f.readline().split()
        return int(some[-1].split(b"=")[1]) * 1000
    return None


def _schedstat(pid: int) -> tuple[int, int | None] | None:
    """A process's cumulative run-queue wait (ns), over all its threads (an agent's worker
    threads starve too: a DNS lookup, a thread pool, a Node runtime), and its start on the
    monotonic clock. A thread that exits takes its share with it: that undercounts, never
    overcounts (a drop is not a wait)."""
    delay = _read_int_field(f"/proc/{pid}/schedstat", 1)
    if delay is None:
        return None
    with contextlib.suppress(OSError):
        tids = os.listdir(f"/proc/{pid}/task")
        if len(tids) > 1:
            waits = (_read_int_field(f"/proc/{pid}/task/{tid}/schedstat", 1) for tid in tids)
            delay = sum(w for w in waits if w is not None)
    started: int | None = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        since_boot = int(fields[19]) * 10**9 // _TICKS  # field 22: start, in ticks after boot
        boot_to_mono = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
        started = since_boot - boot_to_mono
    return delay, started


ChildSampler.log.refresh = ChildSampler.sample_now
