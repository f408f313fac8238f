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
    load = (entry.get("load") or {}).get("load_average_1min")
    loaded = f"; load average {load['min']:g} to {load['max']:g}" if load else ""
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


RENDERERS: dict[str, Renderer] = {
    "bench_throughput": _throughput,
    "bench_paced": _paced,
    "bench_memory": _memory,
    "bench_cost_curve": _cost_curve,
    "bench_catalogue": _catalogue,
}


def render(name: str, entry: dict[str, Any]) -> str:
    """The markdown of block `name` from its entry in results.json."""
    lines = RENDERERS[name](entry["figures"])
    return "\n".join([*lines, "", _source(entry)]) + "\n"


def blocks(text: str) -> list[tuple[str, str]]:
    """(name, body) of each figures block in a README's text."""
    return [(m["name"], m["body"]) for m in BLOCK.finditer(text)]


def rendered(text: str, data: dict[str, Any]) -> str:
    """`text` with every block whose benchmark has figures re-rendered from `data`."""
    recorded = data.get("benchmarks", {})

    def one(m: re.Match[str]) -> str:
        name = m["name"]
        if name not in recorded:
            return m[0]
        return m[1] + render(name, recorded[name]) + m[4]

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
