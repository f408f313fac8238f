"""`reports/latest/index.html`: one self-contained page a person reads after a run.

No network: CSS, JavaScript and SVG are inline, nothing is fetched (no font, no CDN, no
image). The page works with JavaScript off: every row is shown, and the filters (status,
family, provider) are checkboxes that hide rows through CSS `:has()`; with JavaScript on,
the page also counts what is shown, offers "problems only" and copy buttons.

Each case that did not pass gets its timeline drawn as SVG on one clock: the harness's
steps, the agent's notes, and each provider connection as a bar from accept to close with
its events as ticks; the cancel, the close and the bound the check judged by are marked.
The mutants matrix is a table; a soak adds its per-case counts, the flake rate per case and
the leak samples over time.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.cases import CaseResult, RunResult, Status

_PROBLEMS = (Status.FAILED, Status.ERROR, Status.INDETERMINATE, Status.DID_NOT_START)
_DIMENSIONS = ("status", "family", "provider")


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def family(case_id: str) -> str:
    return case_id.split(".", 1)[0]


def case_anchor(result: CaseResult) -> str:
    rep = f"-r{result.repetition + 1}" if result.repetition else ""
    return f"case-{slug(result.name)}{rep}"


# ------------------------------------------------------------------------------ page

_CSS = """
:root{--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--na:#6e7781;--line:#d0d7de;--bg:#f6f8fa}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2328}
header{background:#24292f;color:#fff;padding:14px 24px}
header h1{margin:0 0 4px;font-size:20px}
header .meta{color:#d0d7de;font-size:13px}
main{padding:16px 24px;max-width:1400px}
h2{font-size:17px;border-bottom:1px solid var(--line);padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;width:100%;margin:8px 0}
th,td{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
th{background:var(--bg)}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.chip{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;margin-right:6px;
 color:#fff;background:var(--na)}
.s-passed{background:var(--ok)}.s-failed,.s-error,.s-did-not-start{background:var(--bad)}
.s-indeterminate{background:var(--warn)}
.verdict-leak,.verdict-NOT-CAUGHT{color:var(--bad);font-weight:600}
.verdict-flat,.verdict-caught{color:var(--ok)}
pre,code{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:var(--bg);padding:8px;overflow-x:auto;white-space:pre-wrap}
.replay{display:flex;gap:8px;align-items:center}
.replay code{background:var(--bg);padding:4px 6px;flex:1;word-break:break-all}
.filters{display:flex;flex-wrap:wrap;gap:16px;background:var(--bg);padding:8px 12px;
 border:1px solid var(--line)}
.filters fieldset{border:0;margin:0;padding:0}
.filters legend{font-weight:600;padding:0}
.filters label{margin-right:10px;white-space:nowrap}
.case{border:1px solid var(--line);border-left:4px solid var(--bad);padding:4px 12px 10px;
 margin:14px 0}
.case.st-indeterminate{border-left-color:var(--warn)}
svg{max-width:100%;height:auto;display:block;background:#fff}
svg text{font:11px ui-monospace,monospace;fill:#1f2328}
.charts{display:flex;flex-wrap:wrap;gap:12px}
.legend{color:#57606a;font-size:12px;margin:2px 0 6px}
.js-only{display:none}
.has-js .js-only{display:inline-block}
"""

_JS = """
(function(){
  document.documentElement.classList.add('has-js');
  var boxes=[].slice.call(document.querySelectorAll('.filters input[type=checkbox]'));
  var rows=[].slice.call(document.querySelectorAll('tr.row'));
  var shown=document.getElementById('shown');
  function count(){
    if(!shown){return;}
    var n=rows.filter(function(r){return r.offsetParent!==null;}).length;
    shown.textContent='showing '+n+' of '+rows.length+' case(s)';
  }
  boxes.forEach(function(b){b.addEventListener('change',count);});
  var problems=document.getElementById('problems-only');
  if(problems){problems.addEventListener('click',function(){
    boxes.forEach(function(b){
      if(b.dataset.dim==='status'){b.checked=!(b.value==='passed'||b.value==='not-applicable');}
    });
    count();
  });}
  [].slice.call(document.querySelectorAll('button.copy')).forEach(function(btn){
    btn.addEventListener('click',function(){
      var text=btn.parentNode.querySelector('code').textContent;
      if(navigator.clipboard){navigator.clipboard.writeText(text).then(function(){
        btn.textContent='copied';},function(){btn.textContent='select and copy';});}
    });
  });
  count();
})();
"""


def page(title: str, meta: str, body: Iterable[str], filter_css: str = "") -> str:
    """The whole document: inline style and script, nothing fetched."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            # Belt and braces: even a stray URL in a message cannot make the page fetch.
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">",
            f"<title>{esc(title)}</title>",
            f"<style>{_CSS}{filter_css}</style></head><body>",
            f"<header><h1>{esc(title)}</h1><div class='meta'>{meta}</div></header><main>",
            *body,
            f"</main><script>{_JS}</script></body></html>",
        ]
    )


def write_html(text: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- filters


def _filter_values(results: Sequence[CaseResult]) -> dict[str, list[str]]:
    return {
        "status": list(dict.fromkeys(r.status.value for r in results)),
        "family": list(dict.fromkeys(family(r.id) for r in results)),
        "provider": list(dict.fromkeys(r.kind for r in results)),
    }


def _filters(values: Mapping[str, list[str]]) -> tuple[str, str]:
    """Checkboxes (HTML) and the CSS that hides what is unchecked, without JavaScript."""
    css, parts = [], ['<form class="filters" aria-label="filters" onsubmit="return false">']
    for dim in _DIMENSIONS:
        parts.append(f"<fieldset><legend>{dim}</legend>")
        for value in values.get(dim, []):
            box = f"f-{dim}-{slug(value)}"
            parts.append(
                f'<label><input type="checkbox" id="{box}" data-dim="{dim}" '
                f'value="{esc(value)}" checked> {esc(value)}</label>'
            )
            css.append(
                f'body:has(#{box}:not(:checked)) [data-{dim}="{slug(value)}"]{{display:none}}'
            )
        parts.append("</fieldset>")
    parts.append(
        '<span><button type="button" id="problems-only" class="js-only">problems only</button> '
        '<span id="shown" class="js-only"></span></span></form>'
    )
    return "".join(parts), "\n".join(css)


def _data(result: CaseResult) -> str:
    return (
        f'data-status="{slug(result.status.value)}" data-family="{slug(family(result.id))}" '
        f'data-provider="{slug(result.kind)}"'
    )


# ---------------------------------------------------------------------------- tables


def _chip(status: str) -> str:
    return f'<span class="chip s-{slug(status)}">{esc(status)}</span>'


def summary_rows(results: Sequence[CaseResult], repetitions: int = 1) -> str:
    rows = [
        "<table class='summary'><thead><tr><th>status</th><th>case</th><th>incident</th>"
        "<th>time</th><th>message</th></tr></thead><tbody>"
    ]
    for r in results:
        name = esc(r.name) + (f" #{r.repetition + 1}" if repetitions > 1 else "")
        if r.status in _PROBLEMS:
            name = f'<a href="#{case_anchor(r)}">{name}</a>'
        first = r.message.splitlines()[0] if r.message else ""
        rows.append(
            f'<tr class="row" {_data(r)}><td>{_chip(r.status.value)}</td><td>{name}</td>'
            f'<td>{esc(r.incident)}</td><td class="num">{r.duration:.2f}s</td>'
            f"<td>{esc(first)}</td></tr>"
        )
    rows.append("</tbody></table>")
    return "".join(rows)


def replay_block(command: str) -> str:
    return (
        f'<div class="replay"><span>replay:</span><code>{esc(command)}</code>'
        '<button type="button" class="copy js-only">copy</button></div>'
    )


def case_section(result: CaseResult, repetitions: int = 1, word: str = "repetition") -> str:
    rep = f" ({word} {result.repetition + 1})" if repetitions > 1 else ""
    parts = [
        f'<section class="case st-{slug(result.status.value)}" id="{case_anchor(result)}" '
        f"{_data(result)}>",
        f"<h3>{_chip(result.status.value)} {esc(result.name)}{rep}: {esc(result.title)}</h3>",
        f"<pre class='message'>{esc(result.message)}</pre>",
    ]
    if result.attempts and len(result.attempts) > 1:
        tried = "; ".join(f"{a.status.value}" for a in result.attempts)
        parts.append(f"<p>attempts: {esc(tried)}</p>")
    for warning in result.warnings:
        parts.append(f"<p>warning: {esc(warning)}</p>")
    if result.trace:
        parts.append(timeline_svg(result.trace, result.name))
    parts.append(replay_block(result.replay))
    if result.timeline:
        parts.append(
            f"<details><summary>timeline as text</summary><pre>{esc(result.timeline)}</pre>"
            "</details>"
        )
    parts.append(f"<p>seed {result.seed}</p></section>")
    return "".join(parts)


# -------------------------------------------------------------------------- timeline

_LANE_COLORS = {"harness": "#0969da", "agent": "#8250df", "provider": "#1f2328"}


def _ticks(t0: float, t1: float, count: int = 8) -> list[float]:
    span = max(t1 - t0, 1e-6)
    raw = span / count
    step = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 1.0
    for mult in (1, 2, 5, 10):
        if step * mult >= raw:
            step *= mult
            break
    first = (int(t0 // step) + (1 if t0 % step else 0)) * step
    out, t = [], first
    while t <= t1 + 1e-9:
        out.append(round(t, 6))
        t += step
    return out


def timeline_svg(trace: Mapping[str, Any], name: str, width: int = 1000) -> str:
    """Harness, agent and each provider connection as lanes on one clock (ms from the
    scenario start); cancel, close and bound marked; every point has a <title>."""
    entries = list(trace.get("entries", []))
    conns = list(trace.get("connections", []))
    marks = list(trace.get("marks", []))
    times = [float(e["t"]) for e in entries] + [float(m["t"]) for m in marks]
    for c in conns:
        times.append(float(c["opened"]))
        if c.get("closed") is not None:
            times.append(float(c["closed"]))
    t0, t1 = min([0.0, *times]), max([float(trace.get("end", 0.0)), *times, 1.0])
    t1 += (t1 - t0) * 0.03
    left, right, top, lane_h = 150, 20, 28, 26
    lanes = ["harness", "agent"] + [f"conn#{c['id']}" for c in conns]
    height = top + lane_h * len(lanes) + 30

    def x(t: float) -> float:
        return round(left + (t - t0) / (t1 - t0) * (width - left - right), 2)

    def y(index: int) -> int:
        return top + lane_h * index + lane_h // 2

    out = [
        f'<svg class="timeline" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg" '
        f'aria-label="timeline of {esc(name)}">',
    ]
    for i, lane in enumerate(lanes):
        label = lane
        if i >= 2:
            conn = conns[i - 2]
            roles = ",".join(conn.get("roles") or []) or "-"
            label = f"{lane} {roles}"
        out.append(f'<text x="6" y="{y(i) + 4}">{esc(label[:20])}</text>')
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(i)}" y2="{y(i)}" '
            'stroke="#eaeef2" stroke-width="1"/>'
        )
    axis_y = top + lane_h * len(lanes) + 4
    for t in _ticks(t0, t1):
        out.append(
            f'<line x1="{x(t)}" x2="{x(t)}" y1="{top - 4}" y2="{axis_y}" stroke="#eaeef2"/>'
            f'<text x="{x(t)}" y="{axis_y + 14}" text-anchor="middle">{t:g} ms</text>'
        )
    for i, conn in enumerate(conns, start=2):
        opened, closed = float(conn["opened"]), conn.get("closed")
        end = float(closed) if closed is not None else t1
        by = conn.get("closed_by")
        color = "#2da44e" if by == "client" else ("#6e7781" if by else "#cf222e")
        state = (
            f"closed by {by} ({conn.get('close_kind')}) at {float(closed):+.1f} ms"
            if closed is not None
            else "still open at the end"
        )
        out.append(
            f'<rect class="conn" x="{x(opened)}" y="{y(i) - 6}" '
            f'width="{max(1.0, x(end) - x(opened)):.2f}" height="12" fill="{color}" '
            f'fill-opacity="0.25" stroke="{color}"><title>conn#{conn["id"]} opened at '
            f"{opened:+.1f} ms, {conn.get('events_sent', 0)} events, {esc(state)}</title></rect>"
        )
        for t in conn.get("events", []):
            out.append(
                f'<line x1="{x(float(t))}" x2="{x(float(t))}" y1="{y(i) - 6}" y2="{y(i) + 6}" '
                f'stroke="{color}" stroke-width="1"/>'
            )
        if closed is not None:
            out.append(
                f'<rect class="mark-close" x="{x(end) - 4}" y="{y(i) - 8}" width="8" height="16" '
                f'fill="{color}"><title>close: {esc(state)}</title></rect>'
                f'<text x="{x(end) + 6}" y="{y(i) - 8}">close</text>'
            )
        else:
            out.append(f'<text x="{x(end) - 70}" y="{y(i) - 8}" fill="#cf222e">never closed</text>')
    for e in entries:
        lane = e.get("lane")
        if lane not in ("harness", "agent"):
            continue
        index = 0 if lane == "harness" else 1
        what = f"{float(e['t']):+.1f} ms {lane}: {e.get('what', '')}"
        out.append(
            f'<circle cx="{x(float(e["t"]))}" cy="{y(index)}" r="4" '
            f'fill="{_LANE_COLORS[lane]}"><title>{esc(what)}</title></circle>'
        )
    bottom = top + lane_h * len(lanes)
    for e in entries:
        if e.get("mark") == "cancel":
            cx = x(float(e["t"]))
            out.append(
                f'<line class="mark-cancel" x1="{cx}" x2="{cx}" y1="{top - 6}" y2="{bottom}" '
                'stroke="#cf222e" stroke-width="2" stroke-dasharray="4 3">'
                f"<title>{esc(e.get('what', 'cancel'))} at {float(e['t']):+.1f} ms</title></line>"
                f'<text x="{cx + 3}" y="{top - 10}" fill="#cf222e">cancel</text>'
            )
    for m in marks:
        mx = x(float(m["t"]))
        out.append(
            f'<line class="mark-bound" x1="{mx}" x2="{mx}" y1="{top - 6}" y2="{bottom}" '
            'stroke="#bf8700" stroke-width="2" stroke-dasharray="2 2">'
            f"<title>{esc(m.get('label', 'bound'))} at {float(m['t']):+.1f} ms</title></line>"
            f'<text x="{mx + 3}" y="{bottom + 12}" fill="#9a6700">bound</text>'
        )
    out.append("</svg>")
    out.append(
        "<p class='legend'>one clock, ms from the scenario start: dots are harness steps and "
        "agent notes (hover for what), a bar is a provider connection from accept to close "
        "with a tick per event written (green: closed by the client, grey: by the server, "
        "red: never closed); red dashes: the cancel; amber dots: the bound the check "
        "judged by.</p>"
    )
    if trace.get("omitted"):
        out.append(f"<p>{trace['omitted']} earlier entries not drawn.</p>")
    return "".join(out)


# ------------------------------------------------------------------------- run page


def run_meta(run: RunResult) -> str:
    config = run.config
    bits = [
        f"target {esc(run.target_name)}",
        f"seed {config.seed}",
        f"tempo {config.tempo:g}s",
    ]
    if config.defects:
        bits.append("defects " + esc(",".join(config.defects)))
    if run.repetitions > 1:
        bits.append(f"{run.repetitions} repetitions")
    if run.shard:
        bits.append(f"shard {esc(run.shard)}")
    bits.append(f"started {esc(run.started)}")
    return " · ".join(bits)


def counts_line(results: Sequence[CaseResult]) -> str:
    counts = {s: sum(1 for r in results if r.status is s) for s in Status}
    return "".join(f"{_chip(s.value)}{n} " for s, n in counts.items() if n or s in (Status.PASSED,))


def run_page(
    run: RunResult,
    *,
    title: str = "cancel-harness run",
    notes: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> str:
    results = run.results
    controls, filter_css = _filters(_filter_values(results))
    body = [f"<p>{counts_line(results)} in {run.wall_seconds:.1f} s</p>"]
    for note in [*notes, *run.notes]:
        body.append(f"<p class='note'>{esc(note)}</p>")
    body += ["<h2>Cases</h2>", controls, summary_rows(results, run.repetitions)]
    problems = [r for r in results if r.status in _PROBLEMS]
    if problems:
        body.append(f"<h2>Did not pass ({len(problems)})</h2>")
        body += [case_section(r, run.repetitions) for r in problems]
    body += list(extra)
    return page(title, run_meta(run), body, filter_css)


# --------------------------------------------------------------------------- mutants


def mutants_table(matrix: Mapping[str, Any]) -> str:
    clean = matrix.get("clean", {})
    rows = [
        "<h2>Mutants matrix</h2>",
        f"<p>clean agent: {'every applicable case passed' if clean.get('ok') else 'FAILED: '}"
        f"{esc(', '.join(clean.get('failing', [])))} ({clean.get('applicable', 0)} applicable); "
        f"a catch must fail {int(matrix.get('reruns', 0)) + 1} of "
        f"{int(matrix.get('reruns', 0)) + 1} runs</p>",
        "<table class='mutants'><thead><tr><th>defect</th><th>verdict</th><th>caught by "
        "(failed/runs)</th><th>flaky, not counted</th><th>claimed but missed</th>"
        "<th>indeterminate / errors</th></tr></thead><tbody>",
    ]
    for defect, row in matrix.get("defects", {}).items():
        status = row.get("status", "")
        verdict = "NOT CAUGHT" if status == "not-caught" else status
        if status == "not-applicable":
            verdict = f"not applicable (lives behind {', '.join(row.get('doors', []))})"
        css = "verdict-NOT-CAUGHT" if status == "not-caught" else f"verdict-{slug(status)}"
        rows.append(
            f"<tr><td>{esc(defect)}</td><td class='{css}'>{esc(verdict)}</td>"
            f"<td>{esc(', '.join(row.get('caught_by', [])))}</td>"
            f"<td>{esc(', '.join(row.get('flaky', [])))}</td>"
            f"<td>{esc(', '.join(row.get('claimed_but_missed', [])))}</td>"
            f"<td>{esc(', '.join([*row.get('indeterminate', []), *row.get('errors', [])]))}</td>"
            "</tr>"
        )
    rows.append("</tbody></table>")
    return "".join(rows)


def mutants_page(matrix: Mapping[str, Any], evidence: Sequence[tuple[str, CaseResult]] = ()) -> str:
    """The matrix, then the failures behind it with their timelines: each clean case that
    did not pass, and for each caught defect the first run of a case that caught it."""
    meta = (
        f"target {esc(matrix.get('target'))} · seed {matrix.get('seed')} · tempo "
        f"{matrix.get('tempo')}s"
        + (f" · shard {esc(matrix['shard'])}" if matrix.get("shard") else "")
    )
    verdict = "every applicable defect caught" if matrix.get("ok") else "NOT OK"
    uncaught = matrix.get("uncaught") or []
    body = [f"<p><strong>{esc(verdict)}</strong>"]
    if uncaught:
        body.append(f": caught by no scenario: {esc(', '.join(uncaught))}")
    body.append("</p>")
    details = matrix.get("clean", {}).get("details", {})
    for case, story in details.items():
        body.append(f"<pre>{esc(case)}: {esc(story)}</pre>")
    body.append(mutants_table(matrix))
    clean = [r for row, r in evidence if row == "clean"]
    if clean:
        body.append(f"<h2>Clean agent: did not pass ({len(clean)})</h2>")
        body += [case_section(r) for r in clean]
    caught = [(row, r) for row, r in evidence if row != "clean"]
    if caught:
        body.append(
            "<h2>How each defect was caught</h2><p>the first run of the first case that "
            "caught it, as a user of that defective agent would see it</p>"
        )
        for defect, result in caught:
            body.append(f"<h3 id='caught-{slug(defect)}'>{esc(defect)}</h3>")
            body.append(case_section(result))
    return page("cancel-harness mutants", meta, body)


# ---------------------------------------------------------------------------- charts


def line_chart(
    points: Sequence[tuple[float, float]],
    *,
    title: str,
    unit: str,
    width: int = 560,
    height: int = 200,
) -> str:
    """A line over time (s since the start) with its first and last values labelled."""
    if not points:
        return f"<p>{esc(title)}: no samples</p>"
    left, right, top, bottom = 60, 16, 22, 28
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1e-6)
    lo, hi = min(ys), max(ys)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    pad = (hi - lo) * 0.1
    lo, hi = lo - pad, hi + pad

    def px(t: float) -> float:
        return round(left + (t - x0) / (x1 - x0) * (width - left - right), 2)

    def py(v: float) -> float:
        return round(height - bottom - (v - lo) / (hi - lo) * (height - top - bottom), 2)

    line = " ".join(f"{px(t)},{py(v)}" for t, v in points)
    first, last = points[0], points[-1]
    return (
        f'<svg class="chart" role="img" aria-label="{esc(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="{left}" y="14">{esc(title)} ({esc(unit)})</text>'
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" '
        'stroke="#8c959f"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#8c959f"/>'
        f'<text x="{left - 4}" y="{py(hi - pad) + 4}" text-anchor="end">{hi - pad:g}</text>'
        f'<text x="{left - 4}" y="{py(lo + pad) + 4}" text-anchor="end">{lo + pad:g}</text>'
        f'<text x="{left}" y="{height - 8}">{x0:.0f} s</text>'
        f'<text x="{width - right}" y="{height - 8}" text-anchor="end">{x1:.0f} s</text>'
        f'<polyline fill="none" stroke="#0969da" stroke-width="1.5" points="{line}"/>'
        + "".join(
            f'<circle cx="{px(t)}" cy="{py(v)}" r="2" fill="#0969da"><title>{t:.0f} s: '
            f"{v:g} {esc(unit)}</title></circle>"
            for t, v in points
        )
        + f"<title>{esc(title)}: {first[1]:g} at start, {last[1]:g} at the end</title></svg>"
    )


def bar_chart(rows: Sequence[tuple[str, float, str]], *, title: str, width: int = 800) -> str:
    """Horizontal bars 0..1 (a rate), one per label, with the label and its detail."""
    if not rows:
        return f"<p>{esc(title)}: nothing to draw</p>"
    left, bar_h = 330, 16
    height = 24 + bar_h * len(rows) + 8
    out = [
        f'<svg class="chart" role="img" aria-label="{esc(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="4" y="14">{esc(title)}</text>'
    ]
    span = width - left - 120
    for i, (label, rate, detail) in enumerate(rows):
        y = 24 + i * bar_h
        w = max(1.0, rate * span)
        out.append(
            f'<text x="4" y="{y + 12}">{esc(label[:44])}</text>'
            f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{bar_h - 4}" fill="#cf222e">'
            f"<title>{esc(label)}: {esc(detail)}</title></rect>"
            f'<text x="{left + w + 4}" y="{y + 12}">{rate:.1%} {esc(detail)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


# ------------------------------------------------------------------------------ soak


def _amount(metric: str, value: object, *, signed: bool = False) -> str:
    if not isinstance(value, int | float):
        return esc(value)
    if metric == "rss_kib":
        return f"{value / 1024:{'+' if signed else ''}.1f} MiB"
    return f"{value:{'+' if signed else ''}.2f}" if signed else f"{value:g}"


def soak_page(data: Mapping[str, Any], failing: Sequence[CaseResult]) -> str:
    """The soak: per-case counts (filterable), flake rate per case, leak samples over time,
    the leak verdicts, and each failing case's first failures with their timelines."""
    cases = list(data.get("cases", []))
    ids = [str(c["name"]).split("[", 1) for c in cases]
    values = {
        "status": list(dict.fromkeys(str(c["verdict"]) for c in cases)),
        "family": list(dict.fromkeys(family(i[0]) for i in ids)),
        "provider": list(dict.fromkeys(i[1].rstrip("]") if len(i) > 1 else "-" for i in ids)),
    }
    controls, filter_css = _filters(values)
    seeds = "..".join(str(s) for s in data.get("seeds", []))
    meta = (
        f"target {esc(data.get('target'))} · seeds {seeds} · tempo "
        f"{data.get('tempo')}s · {data.get('passes')} passes in {data.get('wall_seconds')} s "
        f"(asked {data.get('duration')} s, stopped by {esc(data.get('stopped_by'))})"
        + (f" · shard {esc(data['shard'])}" if data.get("shard") else "")
    )
    counts = data.get("counts", {})
    body = [
        "<p>" + "".join(f"{_chip(s)}{n} " for s, n in counts.items() if n) + f"in "
        f"{data.get('cases_run', 0)} case runs</p>"
    ]
    for note in data.get("notes", []):
        body.append(f"<p class='note'>{esc(note)}</p>")
    leaks = data.get("leaks", {})
    leaking = [m for m, v in leaks.items() if v.get("verdict") == "leak"]
    body.append(
        "<h2>Leaks</h2><p>"
        + (
            f"<strong class='verdict-leak'>leak trend: {esc(', '.join(leaking))}</strong>"
            if leaking
            else "<span class='verdict-flat'>no leak trend</span>"
        )
        + " (sampled after each pass, no case live; harness/leaks.py says how a trend is "
        "judged)</p><table class='leaks'><thead><tr><th>metric</th><th>start</th><th>end</th>"
        "<th>slope per hour</th><th>verdict</th></tr></thead><tbody>"
    )
    for metric, v in leaks.items():
        body.append(
            f"<tr><td>{esc(metric)}</td><td class='num'>{_amount(metric, v.get('start'))}</td>"
            f"<td class='num'>{_amount(metric, v.get('end'))}</td>"
            f"<td class='num'>{_amount(metric, v.get('slope_per_hour'), signed=True)}</td>"
            f"<td class='verdict-{slug(str(v.get('verdict')))}'>{esc(v.get('verdict'))}</td></tr>"
        )
    body.append("</tbody></table><div class='charts'>")
    samples = list(data.get("samples", []))
    for metric, title, unit, scale in (
        ("fds", "open fds (harness + agent tree)", "fds", 1.0),
        ("rss_kib", "RSS (harness + agent tree)", "MiB", 1 / 1024),
        ("threads", "threads", "threads", 1.0),
        ("tasks", "asyncio tasks", "tasks", 1.0),
    ):
        points = [(float(s["t"]), round(float(s[metric]) * scale, 2)) for s in samples]
        body.append(line_chart(points, title=f"{title} over time", unit=unit))
    body.append("</div>")
    flaky = sorted(
        (c for c in cases if float(c.get("flake_rate", 0)) > 0),
        key=lambda c: -float(c["flake_rate"]),
    )
    body.append("<h2>Flake rate per case</h2>")
    body.append(
        bar_chart(
            [
                (
                    str(c["name"]),
                    float(c["flake_rate"]),
                    ", ".join(f"{n} {s}" for s, n in c.get("counts", {}).items()),
                )
                for c in flaky[:40]
            ],
            title="share of runs that did not pass",
        )
        if flaky
        else "<p>every case passed (or was not applicable) in every pass</p>"
    )
    body += ["<h2>Cases</h2>", controls]
    body.append(
        "<table class='summary'><thead><tr><th>verdict</th><th>case</th><th>passed</th>"
        "<th>failed</th><th>indeterminate</th><th>not applicable</th><th>not passed in</th>"
        "</tr></thead><tbody>"
    )
    split = [(i[0], i[1] if len(i) > 1 else "-") for i in ids]
    for c, (case_id, rest) in zip(cases, split, strict=True):
        n = c.get("counts", {})
        failed = n.get("failed", 0) + n.get("error", 0) + n.get("did-not-start", 0)
        where = ", ".join(f"pass {f['pass']} (seed {f['seed']})" for f in c.get("failures", [])[:5])
        body.append(
            f'<tr class="row" data-status="{slug(str(c["verdict"]))}" '
            f'data-family="{slug(family(case_id))}" data-provider="{slug(rest.rstrip("]"))}">'
            f"<td>{_chip(str(c['verdict']))}</td><td>{esc(c['name'])}</td>"
            f"<td class='num'>{n.get('passed', 0)}</td><td class='num'>{failed}</td>"
            f"<td class='num'>{n.get('indeterminate', 0)}</td>"
            f"<td class='num'>{n.get('not-applicable', 0)}</td><td>{esc(where)}</td></tr>"
        )
    body.append("</tbody></table>")
    body += _explore_section(data.get("explore"))
    if failing:
        body.append(f"<h2>Did not pass ({len(failing)} kept)</h2>")
        body += [case_section(r, repetitions=2, word="pass") for r in failing]
    return page("cancel-harness soak", meta, body, filter_css)


def _explore_section(explore: Mapping[str, Any] | None) -> list[str]:
    """`soak --explore`: the search after each pass, and each counterexample with its
    shrunk steps, replay command and timeline."""
    if not explore:
        return []
    runs = list(explore.get("passes", []))
    out = [
        f"<h2>Explore</h2><p>{explore.get('examples_per_pass')} schedules per pass, "
        f"{explore.get('examples')} explored, {explore.get('findings')} finding(s)</p>",
        "<table class='explore'><thead><tr><th>pass</th><th>seed</th><th>examples</th>"
        "<th>passed</th><th>discarded</th><th>indeterminate</th><th>examples/s</th>"
        "<th>found</th></tr></thead><tbody>",
    ]
    for e in runs:
        found = e["finding"]["status"] if e.get("finding") else ("error" if e.get("error") else "")
        out.append(
            f"<tr><td class='num'>{e['pass']}</td><td class='num'>{e['seed']}</td>"
            f"<td class='num'>{e['examples']}</td><td class='num'>{e['passed']}</td>"
            f"<td class='num'>{e['discarded']}</td><td class='num'>{e['indeterminate']}</td>"
            f"<td class='num'>{e['rate']}</td>"
            f"<td>{_chip(found) if found else 'nothing'}</td></tr>"
        )
    out.append("</tbody></table>")
    for e in runs:
        if e.get("error"):
            out.append(f"<p class='note'>pass {e['pass']}: {esc(e['error'])}</p>")
        finding = e.get("finding")
        if not finding:
            continue
        steps = "".join(f"<li>{esc(step)}</li>" for step in finding["steps"])
        out.append(
            f"<section class='case'><h3>explore, pass {e['pass']} (seed {e['seed']}): "
            f"{esc(finding['status'])} after {finding['found_after']} examples</h3>"
            f"<p>{esc(finding['message'])}</p><ol>{steps}</ol>"
            + replay_block(finding["replay"])
            + (f"<pre>{esc(finding['timeline'])}</pre>" if finding.get("timeline") else "")
            + f"<p>scenario function: {esc(finding['scenario'])}</p></section>"
        )
    return out
