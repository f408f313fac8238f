"""The cost-curve chart as a small SVG: four panels, N on a log axis, one line per server.

Hand-written SVG (no plotting library to install): late share, p99 lateness (log axis),
server CPU per 1,000 events, and RSS per stream, each against the number of streams.
"""

from __future__ import annotations

import math
from typing import Any
from xml.sax.saxutils import escape

COLOURS = {"ours": "#1b7837", "workers": "#5aae61", "starlette": "#c51b7d"}
DASHES = {"ours": "", "workers": "6,3", "starlette": ""}
PANELS = (
    ("events more than 10 ms late (%)", "late_share", 100.0, False),
    ("p99 lateness (ms, log)", "p99_ms", 1.0, True),
    ("server CPU per 1,000 events (ms)", "server_cpu_ms_per_1000_events", 1.0, False),
    ("server RSS per open stream (KiB)", "kib_per_stream", 1.0, False),
)
W, H = 420, 260  # one panel
PAD_L, PAD_R, PAD_T, PAD_B = 58, 16, 30, 40


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def _panel(
    x0: float, y0: float, title: str, field: str, scale: float, log: bool, data: dict[str, Any]
) -> list[str]:
    counts: list[int] = data["counts"]
    series: dict[str, list[tuple[int, float | None]]] = {}
    for key, points in data["curve"].items():
        values = []
        for n in counts:
            v = points.get(str(n), {}).get(field)
            values.append((n, None if v is None else float(v) * scale))
        series[key] = values
    finite = [v for vals in series.values() for _, v in vals if v is not None and math.isfinite(v)]
    if log:
        lo = 10 ** math.floor(math.log10(max(min((v for v in finite if v > 0), default=1), 1e-2)))
        hi = 10 ** math.ceil(math.log10(max(max(finite, default=1), lo * 10)))
    else:
        lo, hi = 0.0, _nice_max(max(finite, default=1.0))
    xl, xh = math.log10(min(counts)) - 0.1, math.log10(max(counts)) + 0.1
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def sx(n: float) -> float:
        return x0 + PAD_L + (math.log10(n) - xl) / (xh - xl) * pw

    def sy(v: float) -> float:
        if log:
            f = (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        else:
            f = (v - lo) / (hi - lo)
        return y0 + PAD_T + (1 - min(max(f, 0.0), 1.04)) * ph

    out = [
        f'<rect x="{x0 + PAD_L}" y="{y0 + PAD_T}" width="{pw}" height="{ph}" fill="none" '
        'stroke="#999"/>',
        f'<text x="{x0 + PAD_L}" y="{y0 + 18}" font-size="13" font-weight="bold">'
        f"{escape(title)}</text>",
    ]
    ticks = (
        [lo * 10**i for i in range(round(math.log10(hi / lo)) + 1)]
        if log
        else [lo + (hi - lo) * i / 4 for i in range(5)]
    )
    for t in ticks:
        y = sy(t)
        out.append(
            f'<line x1="{x0 + PAD_L}" x2="{x0 + PAD_L + pw}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#e5e5e5"/>'
        )
        label = f"{t:g}"
        out.append(
            f'<text x="{x0 + PAD_L - 4}" y="{y + 4:.1f}" font-size="10" '
            f'text-anchor="end">{label}</text>'
        )
    for n in counts:
        x = sx(n)
        out.append(
            f'<text x="{x:.1f}" y="{y0 + PAD_T + ph + 14}" font-size="10" '
            f'text-anchor="middle">{n:,}</text>'
        )
    out.append(
        f'<text x="{x0 + PAD_L + pw / 2}" y="{y0 + H - 6}" font-size="10" '
        'text-anchor="middle">concurrent streams at 20 events/s (log)</text>'
    )
    for key, vals in series.items():
        colour = COLOURS.get(key, "#333")
        pts = [(sx(n), sy(v if math.isfinite(v) else hi * 1.04)) for n, v in vals if v is not None]
        if len(pts) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            dash = f' stroke-dasharray="{DASHES.get(key, "")}"' if DASHES.get(key) else ""
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
            )
        for (n, v), (x, y) in zip([(n, v) for n, v in vals if v is not None], pts, strict=True):
            mark = "" if math.isfinite(v) else " (inf)"
            out.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
                f"<title>{escape(key)} {n:,}: {v:.3g}{mark}</title></circle>"
            )
    return out


def cost_curve(data: dict[str, Any]) -> str:
    """The SVG document for `bench_cost_curve`'s figures."""
    width, height = 2 * W, 2 * H + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for i, (title, field, scale, log) in enumerate(PANELS):
        parts += _panel((i % 2) * W, (i // 2) * H, title, field, scale, log, data)
    x = 20
    for key, label in data["labels"].items():
        colour = COLOURS.get(key, "#333")
        y = 2 * H + 22
        dash = f' stroke-dasharray="{DASHES.get(key, "")}"' if DASHES.get(key) else ""
        parts.append(
            f'<line x1="{x}" x2="{x + 24}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" '
            f'stroke-width="2"{dash}/>'
        )
        parts.append(f'<text x="{x + 30}" y="{y}" font-size="12">{escape(label)}</text>')
        x += 40 + 7 * len(label)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
