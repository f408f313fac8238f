"""README figures rendered from `benchmarks/results.json`, between markers the READMEs keep.

A figure in README.md or benchmarks/README.md sits in a block

    <!-- figures: bench_paced -->
    ...markdown rendered by `render("bench_paced", entry)`...
    <!-- /figures -->

`--record` re-renders every block from the file; `tests/benchmarks/test_readme_figures.py`
renders them again and checks the READMEs hold exactly that. A figure typed by hand outside
a block is not checked: put it in a block.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import ROOT

READMES = (ROOT / "README.md", ROOT / "benchmarks" / "README.md")
BLOCK = re.compile(r"(<!-- figures: (?P<name>[\w.]+) -->\n)(?P<body>.*?)(<!-- /figures -->)", re.S)

type Renderer = Callable[[Any], list[str]]


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.2f}%"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return "inf" if value == float("inf") else f"{value:.1f} ms"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def _source(entry: dict[str, Any]) -> str:
    """The line under each table: which command, when, on what, how loaded."""
    m = entry["machine"]
    load = entry.get("load") or {}
    during, end = load.get("load_average_1min"), load.get("load_average_at_end")
    if during:
        loaded = f"; 1-minute load average {during['min']:g} to {during['max']:g}"
    else:
        loaded = f"; 1-minute load average {end[0]:g} at the end" if end else ""
    commit = (entry.get("commit") or "?")[:10]
    dirty = " + uncommitted changes" if entry.get("uncommitted_changes") else ""
    return (
        f"`{entry['command']}`, {entry['date']}, commit {commit}{dirty}; {m['cpu']}, "
        f"{m['cores']} cores, Python {m['python']}{loaded}."
    )


def _throughput(f: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            f"{r['streams']} streams",
            f"{r['ours_uvloop_events_per_s']:,.0f}",
            f"{r['starlette_events_per_s']:,.0f}",
            _x(r["ratio"]),
            f"{r['ours_asyncio_events_per_s']:,.0f}",
        ]
        for r in f
    ]
    return _table(
        ["unpaced, server on one core", "ours (uvloop) ev/s", "starlette ev/s", "ratio",
         "ours (asyncio) ev/s"],
        rows,
    )  # fmt: skip


def _paced(f: dict[str, Any]) -> list[str]:
    sides = ("ours", "starlette_absolute", "starlette_sleep")

    def row(name: str, get: Callable[[dict[str, Any]], str]) -> list[str]:
        return [name, *(get(f[s]) for s in sides)]

    return _table(
        [f"{f['streams']:,} streams at 20 ev/s", "ours", "starlette, absolute deadlines",
         "starlette, sleep after write"],
        [
            row("events > 10 ms late", lambda r: _pct(r["late_share"])),
            row("lateness p99", lambda r: _ms(r["p99_ms"])),
            row("lateness max", lambda r: _ms(r["max_ms"])),
            row("first event after connect, p99", lambda r: _ms(r["first_event_p99_ms"])),
            row("server CPU per 1,000 events",
                lambda r: _ms(r["server_cpu_ms_per_1000_events"])),
            row("server RSS per stream", lambda r: f"{r['kib_per_stream']:.1f} KiB"),
        ],
    )  # fmt: skip


def _memory(f: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            f"{r['streams']:,} idle streams",
            f"{r['ours_kib_per_stream']:.1f} KiB",
            f"{r['starlette_kib_per_stream']:.1f} KiB",
            _x(r["ratio"]),
        ]
        for r in f
    ]
    return _table(["RSS per idle hanging stream", "ours", "starlette", "ratio"], rows)


def _cost_curve(f: dict[str, Any]) -> list[str]:
    counts = f["counts"]
    rows = []
    for title, field, show in (
        ("late > 10 ms", "late_share", _pct),
        ("p99 lateness", "p99_ms", _ms),
        ("CPU per 1,000 events", "server_cpu_ms_per_1000_events", _ms),
        ("RSS per stream", "kib_per_stream", lambda v: "-" if v is None else f"{v:.1f} KiB"),
    ):
        for key, label in f["labels"].items():
            points = f["curve"][key]
            rows.append(
                [title, label]
                + [show(points[str(n)][field]) if str(n) in points else "-" for n in counts]
            )
    return _table(["figure", "server", *(f"{n:,}" for n in counts)], rows)


def _capacity(f: dict[str, Any]) -> list[str]:
    """Where this machine runs out: CPU of ours with `--workers 2` and of the load client."""
    rows = []
    for n in f["counts"]:
        p = f["curve"].get("workers", {}).get(str(n))
        if p is None or p.get("server_cpu_pct") is None:
            continue
        server, client = p["server_cpu_pct"], p["client_cpu_pct"]
        rows.append(
            [
                f"{n:,}",
                f"{n * EVENTS_PER_S_PER_STREAM:,}",
                _ms(p["server_cpu_ms_per_1000_events"]),
                f"{server:.0f}%",
                f"{client:.0f}%",
                f"{(server + client) / 100:.2f}",
                _pct(p["late_share"]),
            ]
        )
    return _table(
        [
            "streams",
            "events/s",
            "server CPU per 1,000 events",
            "server (`--workers 2`)",
            "load client",
            "cores used",
            "late > 10 ms",
        ],
        rows,
    )


def _catalogue(f: dict[str, Any]) -> list[str]:
    return _table(
        ["command", "runs", "median wall", "min", "max", "cases"],
        [
            [
                f"`{r['command']}`",
                str(r["repeats"]),
                f"{r['median_s']:.1f} s",
                f"{r['min_s']:.1f} s",
                f"{r['max_s']:.1f} s",
                str(r["cases"]),
            ]
            for r in f["runs"]
        ],
    )


def _cancel(f: dict[str, Any]) -> list[str]:
    rows = [
        [
            k["kind"],
            str(k["cancels"]),
            f"{k['agent_us']['p50']:,.0f} / {k['agent_us']['p99']:,.0f} us",
            f"{k['floor_us']['p50']:,.0f} / {k['floor_us']['p99']:,.0f} us",
            f"{_x(k['ratio_p50'])} / {_x(k['ratio_p99'])}",
        ]
        for k in f["kinds"]
    ]
    return _table(
        ["wire format", "cancels", "agent p50 / p99", "bare httpx p50 / p99", "agent/floor"], rows
    )


RENDERERS: dict[str, Renderer] = {
    "bench_cancel_latency": _cancel,
    "bench_throughput": _throughput,
    "bench_paced": _paced,
    "bench_memory": _memory,
    "bench_cost_curve": _cost_curve,
    "bench_cost_curve.capacity": _capacity,
    "bench_catalogue": _catalogue,
}
EVENTS_PER_S_PER_STREAM = 20  # the cost curve's pace=50ms


def render(name: str, data: dict[str, Any]) -> str | None:
    """The markdown of block `name` from results.json's `data`; None if not recorded."""
    recorded = data.get("benchmarks", {})
    if name == "summary":
        return _summary(recorded)
    benchmark = name.partition(".")[0]  # `bench.view`: another view of the same record
    if benchmark not in recorded or name not in RENDERERS:
        return None
    entry = recorded[benchmark]
    lines = RENDERERS[name](entry["figures"])
    return "\n".join([*lines, "", _source(entry)]) + "\n"


def _summary(recorded: dict[str, Any]) -> str:
    """README.md's performance table: the headline figure of each benchmark, and its command."""
    rows: list[list[str]] = []

    def cmd(name: str) -> str:
        return f"`{recorded[name]['command']}`" if name in recorded else "not recorded"

    if "bench_throughput" in recorded:
        f = recorded["bench_throughput"]["figures"]
        rows.append(
            [
                " / ".join(str(r["streams"]) for r in f) + " streams, unpaced events/s",
                " / ".join(f"{r['ours_uvloop_events_per_s'] / 1e3:,.0f}k" for r in f),
                "starlette "
                + " / ".join(f"{r['starlette_events_per_s'] / 1e3:,.0f}k" for r in f)
                + " ("
                + " / ".join(_x(r["ratio"]) for r in f)
                + ")",
                ">= 340k",
                cmd("bench_throughput"),
            ]
        )
    if "bench_paced" in recorded:
        f = recorded["bench_paced"]["figures"]
        o, ab = f["ours"], f["starlette_absolute"]
        rows.append(
            [
                f"{f['streams']:,} streams at 20 events/s, one core: events > 10 ms late, p99",
                f"{_pct(o['late_share'])}, {_ms(o['p99_ms'])}",
                f"starlette, absolute deadlines {_pct(ab['late_share'])}, {_ms(ab['p99_ms'])}",
                "< 1%, < 10 ms",
                cmd("bench_paced"),
            ]
        )
    if "bench_cost_curve" in recorded:
        f = recorded["bench_cost_curve"]["figures"]
        workers = f["curve"].get("workers", {})
        base = f["curve"].get("starlette", {})
        for n in ("5000", "10000"):
            if n in workers:
                theirs = f"starlette {_pct(base[n]['late_share'])}" if n in base else "not measured"
                rows.append(
                    [
                        f"{int(n):,} streams at 20 events/s, `--workers 2`: events > 10 ms late",
                        _pct(workers[n]["late_share"]),
                        theirs + " (one core)",
                        "< 1%" if n == "5000" else "",
                        cmd("bench_cost_curve"),
                    ]
                )
    if "bench_memory" in recorded:
        f = recorded["bench_memory"]["figures"]
        rows.append(
            [
                "RSS per idle hanging stream, " + " / ".join(f"{r['streams']:,}" for r in f),
                " / ".join(f"{r['ours_kib_per_stream']:.1f}" for r in f) + " KiB",
                "starlette "
                + " / ".join(f"{r['starlette_kib_per_stream']:.1f}" for r in f)
                + " KiB",
                "<= 14 KiB",
                cmd("bench_memory"),
            ]
        )
    if "bench_catalogue" in recorded:
        f = recorded["bench_catalogue"]["figures"]
        whole = f["runs"][0]
        rows.append(
            [
                f"whole catalogue ({whole['cases']} cases), `cancel-harness run`, median wall",
                f"{whole['median_s']:.1f} s",
                "",
                f"< {f['target_s']:g} s",
                cmd("bench_catalogue"),
            ]
        )
    if "bench_cancel_latency" in recorded:
        k = recorded["bench_cancel_latency"]["figures"]["kinds"][0]
        a, fl = k["agent_us"], k["floor_us"]
        rows.append(
            [
                f"cancel-to-close, reference agent p50 / p99 ({k['kind']})",
                f"{a['p50']:,.0f} / {a['p99']:,.0f} us",
                f"bare httpx close {fl['p50']:,.0f} / {fl['p99']:,.0f} us "
                f"({_x(k['ratio_p50'])} at p50)",
                "",
                cmd("bench_cancel_latency"),
            ]
        )
    dates = sorted(e["date"] for e in recorded.values())
    machines = sorted(
        {f"{e['machine']['cpu']}, {e['machine']['cores']} cores" for e in recorded.values()}
    )
    lines = _table(["figure", "ours", "baseline", "target", "command"], rows)
    loads = [
        x
        for e in recorded.values()
        for x in ((e.get("load") or {}).get("load_average_1min") or {}).values()
    ] + [
        e["load"]["load_average_at_end"][0]
        for e in recorded.values()
        if (e.get("load") or {}).get("load_average_at_end")
    ]
    if dates:
        busy = f", 1-minute load average {min(loads):g} to {max(loads):g}" if loads else ""
        lines += ["", f"Recorded {dates[0]} to {dates[-1]} on {'; '.join(machines)}{busy}."]
    return "\n".join(lines) + "\n"


def blocks(text: str) -> list[tuple[str, str]]:
    """(name, body) of each figures block in a README's text."""
    return [(m["name"], m["body"]) for m in BLOCK.finditer(text)]


def rendered(text: str, data: dict[str, Any]) -> str:
    """`text` with every block whose benchmark has figures re-rendered from `data`."""

    def one(m: re.Match[str]) -> str:
        body = render(m["name"], data)
        return m[0] if body is None else m[1] + body + m[4]

    return BLOCK.sub(one, text)


def update_readmes(data: dict[str, Any], paths: tuple[Path, ...] = READMES) -> list[Path]:
    changed = []
    for path in paths:
        text = path.read_text()
        new = rendered(text, data)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed
