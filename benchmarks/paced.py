"""One paced-streams measurement: a server, N concurrent streams at 20 events/s, the client.

Shared by `bench_paced` (2,000 streams, three servers) and `bench_cost_curve` (N = 500 to
10,000). The server runs on core 0 (both cores with `--workers 2`), the load client on
core 1. The client opens the streams in batches of 25 every 23.5 ms: 80 batches that land
on 80 distinct phases of the 50 ms period, as independent streams would (with a gap that is
a multiple of 50 ms, every stream would tick at the same instant: a burst every 50 ms, which
measures burst handling rather than pacing). Event i of a stream is scheduled at (arrival of
that stream's first event) + i x 50 ms; lateness = arrival - schedule.

Besides the client's figures, the orchestrator samples the server's RSS (its whole process
tree) every 0.25 s: before the first connection, and its peak while the streams are open.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil

from benchmarks import children, machine, request
from benchmarks.servers import ServerSpec, running_server

INTERVAL_S = 0.050
THRESHOLD_S = 0.010
BATCH, GAP_S = 25, 0.0235
SLACK_S = 10.0


class RssSampler:
    """The RSS of a process and its children, sampled in a thread until stopped."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        self.proc = psutil.Process(pid)
        self.every = every
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        total = 0
        for proc in (self.proc, *self.proc.children(recursive=True)):
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append((time.monotonic(), self.rss()))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)


def measure(spec: ServerSpec, streams: int, tokens: int) -> dict[str, Any]:
    """Run `streams` paced streams of `tokens` tokens against one server; the client's result
    plus the server's RSS, CPU per event and the first 3 events (for the same-bytes check)."""
    events = request.events_per_response(tokens)
    with running_server(spec) as (port, child):
        first = request.fetch_body(port, max_events=3)
        time.sleep(0.3)
        cfg = {
            "mode": "paced",
            "port": port,
            "server_pid": child.pid,
            "streams": streams,
            "events_per_response": events,
            "interval_s": INTERVAL_S,
            "late_threshold_s": THRESHOLD_S,
            "ramp_batch": BATCH,
            "ramp_gap_s": GAP_S,
            "slack_s": SLACK_S,
        }
        quiet = machine.wait_quiet(max_wait=10.0)
        budget = (streams / BATCH) * GAP_S + (events - 1) * INTERVAL_S + SLACK_S + 90
        sampler = RssSampler(child.pid)
        before = sampler.rss()
        with sampler:
            res = children.run_client(cfg, timeout=budget)
    res["machine_before"] = quiet
    res["first_3_events"] = first
    res["rss_before"] = before
    res["rss_peak"] = sampler.peak
    res["kib_per_stream"] = (sampler.peak - before) / streams / 1024
    received = res["received_events"]
    res["server_cpu_ms_per_1000_events"] = (
        1e6 * res["server_cpu_s"] / received if received else None
    )
    return res


def describe(label: str, res: dict[str, Any]) -> str:
    """One line per run: the headline figures and the load around it."""
    lat, first = res["lateness_ms"], res["first_event_ms"]
    cpu = res["server_cpu_ms_per_1000_events"]
    return (
        f"  {label:<32} late {100 * res['late_share']:6.2f}%  p99 {lat['p99']:8.1f} ms  "
        f"max {lat['max']:8.1f} ms  missing {res['missing_events']}  first event p99 "
        f"{first['p99']:7.1f} ms  CPU {cpu if cpu is None else round(cpu, 1)} ms/1k ev  "
        f"{res['kib_per_stream']:.1f} KiB/stream  (CPU: server {res['server_cpu_pct']:.0f}%, "
        f"client {res['client_cpu_pct']:.0f}%, others {res['other_processes_cpu_pct']:.0f}%; "
        f"client loop lag p99 {res['client_loop_lag']['p99_ms']:.1f} ms; "
        f"load {res['machine_before']['load_average'][0]}; errors {len(res['errors'])})"
    )
