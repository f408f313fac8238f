"""What a soak watches between passes, and when a trend is a leak.

A sample is taken after each pass of the catalogue, when no case is live (every provider
stopped, every agent stopped), so a healthy harness returns to the same level each time:

- `fds`, `threads`, `rss_kib`: the harness process plus every live descendant (the agent's
  process tree: agents started as processes, and what they started), from /proc;
- `tasks`: asyncio tasks alive on the soak's event loop (the in-process agent's and the
  harness's; one loop lives for the whole soak, so a task leaked per turn piles up);
- `children`: live descendants of the harness (an agent or tool that was never reaped);
- `orphans`: processes anywhere that carry a case's mark (harness/processes.py) and this
  soak's id (SOAK_VARIABLE, set in the soak's environment, which agents and their tools
  inherit), i.e. a tool process that escaped its case, whoever it was reparented to, and not
  another harness run's on the same machine;
- `left_open`: provider connections still open when their case ended, summed so far.

**The verdict** (`judge`), per metric, on the samples after a warm-up (the first fifth, at
least one: imports, caches and the calibration turns settle there):

- fewer than MIN_SAMPLES samples left: `too short to judge` (said, never a pass nor a leak);
- `leak` when every sample of the last third is above every sample of the first third (a
  rise, not noise around a level) *and* the median grew by at least the metric's threshold
  (THRESHOLDS: 3 fds, 2 threads, 3 tasks, 1 child, 1 orphan, 1 connection left open; RSS
  16 MiB and 10 % of its early level);
- `flat` otherwise. The slope (least squares, per hour) is reported either way.
"""

from __future__ import annotations

import asyncio
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.processes import MARK_VARIABLE

SOAK_VARIABLE = "CANCEL_HARNESS_SOAK"

METRICS = ("fds", "threads", "tasks", "children", "orphans", "rss_kib", "left_open")
UNITS = {"rss_kib": "KiB", "left_open": "connections"}
THRESHOLDS: dict[str, float] = {
    "fds": 3,
    "threads": 2,
    "tasks": 3,
    "children": 1,
    "orphans": 1,
    "left_open": 1,
    "rss_kib": 16 * 1024,
}
RSS_RELATIVE = 0.10  # RSS must also grow by this fraction of its early median
WARMUP_FRACTION = 0.2
MIN_SAMPLES = 6  # after the warm-up


@dataclass(frozen=True, slots=True)
class _Proc:
    pid: int
    ppid: int
    state: str


def _stat(pid: str, proc: str) -> _Proc | None:
    try:
        with open(f"{proc}/{pid}/stat", "rb") as file:
            raw = file.read()
    except OSError:
        return None
    rest = raw[raw.rfind(b")") + 2 :].split()
    if len(rest) < 2:
        return None
    return _Proc(int(pid), int(rest[1]), rest[0].decode())


def _status_field(pid: int | str, name: str, proc: str) -> int:
    try:
        with open(f"{proc}/{pid}/status", encoding="ascii", errors="replace") as file:
            for line in file:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _fds(pid: int | str, proc: str) -> int:
    try:
        return len(os.listdir(f"{proc}/{pid}/fd"))
    except OSError:
        return 0


def descendants(root: int, proc: str = "/proc") -> list[int]:
    """Live (non-zombie) processes below `root`."""
    try:
        entries = [e for e in os.listdir(proc) if e.isdigit()]
    except OSError:
        return []
    children: dict[int, list[_Proc]] = {}
    for entry in entries:
        found = _stat(entry, proc)
        if found is not None:
            children.setdefault(found.ppid, []).append(found)
    out: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child.state not in ("Z", "X"):
                out.append(child.pid)
            todo.append(child.pid)
    return sorted(out)


def orphans(proc: str = "/proc", soak: str | None = None) -> int:
    """Processes carrying a case's mark (a tool that escaped its case); with `soak`, only
    those that also carry that soak's id."""
    needle = f"{MARK_VARIABLE}=".encode()
    ours = f"{SOAK_VARIABLE}={soak}".encode() if soak else None
    count = 0
    try:
        entries = [e for e in os.listdir(proc) if e.isdigit()]
    except OSError:
        return 0
    for entry in entries:
        try:
            with open(f"{proc}/{entry}/environ", "rb") as file:
                environ = file.read()
        except OSError:
            continue
        variables = environ.split(b"\0")
        if any(v.startswith(needle) for v in variables) and (ours is None or ours in variables):
            found = _stat(entry, proc)
            if found is not None and found.state not in ("Z", "X"):
                count += 1
    return count


def sample(*, left_open: int = 0, proc: str = "/proc") -> dict[str, int]:
    """The metrics now (call it on the soak's event loop, so `tasks` counts its tasks)."""
    me = os.getpid()
    tree = descendants(me, proc)
    try:
        tasks = len(asyncio.all_tasks())
    except RuntimeError:  # no running loop
        tasks = 0
    agent_fds = sum(_fds(p, proc) for p in tree)
    agent_threads = sum(_status_field(p, "Threads", proc) for p in tree)
    agent_rss = sum(_status_field(p, "VmRSS", proc) for p in tree)
    return {
        "fds": _fds(me, proc) + agent_fds,
        "threads": _status_field(me, "Threads", proc) + agent_threads,
        "tasks": tasks,
        "children": len(tree),
        "orphans": orphans(proc, os.environ.get(SOAK_VARIABLE)),
        "rss_kib": _status_field(me, "VmRSS", proc) + agent_rss,
        "left_open": left_open,
        "agent_fds": agent_fds,
        "agent_threads": agent_threads,
        "agent_rss_kib": agent_rss,
    }


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of value over time (s), per hour; 0 with fewer than 2 points."""
    if len(points) < 2:
        return 0.0
    ts = [p[0] for p in points]
    vs = [p[1] for p in points]
    mt, mv = statistics.fmean(ts), statistics.fmean(vs)
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return 0.0
    return sum((t - mt) * (v - mv) for t, v in zip(ts, vs, strict=True)) / var * 3600


def judge(metric: str, points: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """The verdict for one metric's samples (time s, value): see the module doc."""
    warmup = max(1, int(len(points) * WARMUP_FRACTION))
    kept = list(points[warmup:])
    out: dict[str, Any] = {
        "start": points[0][1] if points else None,
        "end": points[-1][1] if points else None,
        "samples": len(points),
        "judged": len(kept),
        "slope_per_hour": round(slope_per_hour(kept), 3),
        "threshold": THRESHOLDS.get(metric, 0),
    }
    if len(kept) < MIN_SAMPLES:
        return {**out, "verdict": "too short to judge", "growth": 0}
    third = max(1, len(kept) // 3)
    early = [v for _, v in kept[:third]]
    late = [v for _, v in kept[-third:]]
    growth = statistics.median(late) - statistics.median(early)
    needed = THRESHOLDS.get(metric, 1)
    if metric == "rss_kib":
        needed = max(needed, RSS_RELATIVE * statistics.median(early))
    rising = min(late) > max(early)
    verdict = "leak" if rising and growth >= needed else "flat"
    return {**out, "verdict": verdict, "growth": growth, "needed": needed}


def judge_all(samples: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        metric: judge(metric, [(float(s["t"]), float(s[metric])) for s in samples])
        for metric in METRICS
    }
