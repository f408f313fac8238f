"""Probe one agent: what it sends, and how it behaves on a cancel, seen as the harness sees it.

`python -m conformance.probe TARGET KIND --out PATH` (run inside the loopback-only netns, in a
directory whose cancel-harness.toml defines TARGET). Three turns in one session, each prompt
tagged as the harness tags its prompts (`[ch-xxxxxxxx]`): A completes, B's main call is held
at a gate (`role=main,prompt=TAG`, the rule the scenarios use) and cancelled, C must complete
afterwards. The report gives, per request, the role the fake provider classified it as (main,
side or probe, and why), which prompts' tags its body carries, its path, model, stream flag,
token limit, tools and identifying headers; and it measures start-up, session set-up, time to
the first main call, cancel-to-close latency, and whether anything was sent after the cancel.
No calibration runs first, so a side call shaped like a turn's (a title from the prompt)
shows up here as a second main call of its prompt: the evidence calibration works from.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import anyio

from fake_providers import FakeProvider
from fake_providers.kinds import ProviderKind
from fake_providers.ledger import RequestRecord
from fake_providers.roles import Role
from fake_providers.signals import WaitTimeout
from harness.prompts import Prompt, new_tag
from harness.target import AgentSettings, Capability, Endpoint, Submission, Target
from harness.targets import make_target

HEADERS_KEPT = (
    "user-agent",
    "content-type",
    "accept",
    "anthropic-version",
    "anthropic-beta",
    "x-stainless-lang",
    "x-stainless-package-version",
    "x-stainless-retry-count",
    "x-stainless-helper-method",
    "x-goog-api-client",
    "originator",
    "session_id",
    "x-session-affinity",
)
TOKEN_LIMIT_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def _ms(ns: int) -> float:
    return round(ns / 1e6, 1)


def _find_text(obj: Any, out: list[str]) -> None:
    """Every string under `text`/`content` keys, in order (user and system text)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("text", "content", "input", "instructions", "system") and isinstance(
                value, str
            ):
                out.append(value)
            else:
                _find_text(value, out)
    elif isinstance(obj, list):
        for item in obj:
            _find_text(item, out)


def body_facts(body: bytes, tags: Mapping[str, str]) -> dict[str, Any]:
    """What a request body says: shape, limits, and which turns' tags it carries (and how)."""
    facts: dict[str, Any] = {"size": len(body)}
    facts["tags"] = [turn for turn, tag in tags.items() if tag.encode() in body]
    try:
        data = json.loads(body) if body else None
    except ValueError:
        facts["json"] = False
        return facts
    if not isinstance(data, dict):
        return facts
    facts["keys"] = sorted(data)
    for key in TOKEN_LIMIT_KEYS:
        if key in data:
            facts[key] = data[key]
    generation = data.get("generationConfig")
    if isinstance(generation, dict) and "maxOutputTokens" in generation:
        facts["maxOutputTokens"] = generation["maxOutputTokens"]
    if "stream" in data:
        facts["stream"] = data["stream"]
    for key in ("messages", "input", "contents"):
        if isinstance(data.get(key), list):
            facts[f"{key}_count"] = len(data[key])
    tools = data.get("tools")
    facts["tools"] = len(tools) if isinstance(tools, list) else 0
    texts: list[str] = []
    _find_text(data, texts)
    # A tag only in decoded text (not in the raw bytes) was escaped, e.g. nested JSON.
    decoded = "\n".join(texts)
    facts["tags_escaped_only"] = [
        turn for turn, tag in tags.items() if tag in decoded and turn not in facts["tags"]
    ]
    last = texts[-1] if texts else ""
    facts["last_text"] = " ".join(last.split())[:160]
    system = data.get("system") or data.get("instructions") or data.get("systemInstruction")
    if system is not None:
        facts["system_chars"] = len(json.dumps(system))
    return facts


def describe(req: RequestRecord, t0: int, tags: Mapping[str, str]) -> dict[str, Any]:
    turn_of = {tag: turn for turn, tag in tags.items()}
    return {
        "ordinal": req.ordinal,
        "role": req.role.value,
        "prompt": turn_of.get(req.prompt or "", req.prompt),
        "role_reason": req.role_reason,
        "conn": req.connection_id,
        "method": req.method,
        "path": req.path,
        "query": req.query,
        "kind": req.kind,
        "model": req.model,
        "stream": req.stream,
        "status": req.status,
        "outcome": req.outcome.value if req.outcome else None,
        "at_ms": _ms(req.started_ns - t0),
        "events_sent": req.events_sent,
        "call": req.call_id,
        "attempt": req.attempt,
        "headers": {k: v for k, v in req.headers if k in HEADERS_KEPT or k.startswith("x-")},
        "body": body_facts(req.body, tags),
    }


class Probe:
    """One probe run against a started target; fills `report` as it goes."""

    def __init__(self, target: Target, provider: FakeProvider, kind: str, patience: float):
        self.target, self.provider, self.kind, self.patience = target, provider, kind, patience
        rng = secrets.SystemRandom()
        self.prompts = {
            turn: Prompt(said, new_tag(rng))
            for turn, said in (
                ("A", "Say hello."),
                ("B", "Tell me a long story."),
                ("C", "Say hello again."),
            )
        }
        for prompt in self.prompts.values():
            provider.expect_prompt(prompt.tag)
        self.tags = {turn: prompt.tag for turn, prompt in self.prompts.items()}
        self.t0 = time.monotonic_ns()
        self.report: dict[str, Any] = {"kind": kind, "target": target.name, "steps": []}

    def step(self, what: str, **facts: Any) -> None:
        entry = {"at_ms": _ms(time.monotonic_ns() - self.t0), "what": what, **facts}
        self.report["steps"].append(entry)
        print(f"  {entry['at_ms']:>9.1f}ms  {what} {facts if facts else ''}", flush=True)

    def main_call(self, turn: str) -> Callable[[Any], RequestRecord | None]:
        """The turn's first main call: a main call that carries its tag and none of the later
        turns' (an agent that keeps the cancelled prompt B sends it again before C's)."""
        tag = self.tags[turn].encode()
        later = [t.encode() for name, t in self.tags.items() if name > turn]

        def first(ledger: Any) -> RequestRecord | None:
            return next(
                (
                    r
                    for r in ledger.requests()
                    if r.role is Role.MAIN and tag in r.body and not any(t in r.body for t in later)
                ),
                None,
            )

        return first

    async def turn(self, session: str, turn: str) -> dict[str, Any]:
        submitted = time.monotonic_ns()
        sub = await self.target.submit(session, self.prompts[turn].text)
        accepted = time.monotonic_ns()
        facts: dict[str, Any] = {"accept_ms": _ms(accepted - submitted)}
        try:
            req = await self.provider.ledger.wait_for(self.main_call(turn), self.patience)
            facts["first_request_ms"] = _ms(req.started_ns - submitted)
        except WaitTimeout:
            facts["first_request_ms"] = None
        facts.update(await self.outcome(sub))
        facts["total_ms"] = _ms(time.monotonic_ns() - submitted)
        return facts

    async def outcome(self, sub: Submission) -> dict[str, Any]:
        try:
            out = await self.target.wait_outcome(sub, self.patience)
        except TimeoutError:
            return {"stop_reason": None, "error": f"no outcome within {self.patience:g} s"}
        return {"stop_reason": out.stop_reason, "text": out.text[:80], "error": out.error}

    async def cancelled_turn(self, session: str) -> dict[str, Any]:
        tag = self.tags["B"]
        self.provider.add_fault(
            f"role=main,prompt={tag},pace=50ms,hold-before=4,gate=probe,times=1"
        )
        submitted = time.monotonic_ns()
        sub = await self.target.submit(session, self.prompts["B"].text)
        facts: dict[str, Any] = {}
        try:
            await self.provider.gate("probe").wait_reached(timeout=self.patience)
        except (WaitTimeout, TimeoutError):
            facts["held"] = False
            facts.update(await self.outcome(sub))
            return facts
        held = self.main_call("B")(self.provider.ledger)
        assert held is not None
        facts.update(
            held=True, held_request=held.ordinal, held_after_ms=_ms(held.started_ns - submitted)
        )
        t_cancel = time.monotonic_ns()
        ack = await self.target.cancel(session)
        facts["ack"] = {"cancelled": ack.cancelled, "turn": ack.turn_id}
        conn = self.provider.ledger.connection(held.connection_id)
        with contextlib.suppress(WaitTimeout):
            await self.provider.ledger.wait_for_close(conn.id, timeout=5.0)
        if conn.closed_ns is not None:
            facts["close"] = {
                "by": conn.closed_by.value if conn.closed_by else None,
                "kind": conn.close_kind.value if conn.close_kind else None,
                "after_cancel_ms": _ms(conn.closed_ns - t_cancel),
            }
        else:
            facts["close"] = {"by": None, "still_open_after_ms": 5000}
        facts.update(await self.outcome(sub))
        facts["outcome_after_cancel_ms"] = _ms(time.monotonic_ns() - t_cancel)
        self.provider.gate("probe").release()  # a real model would go on writing
        with anyio.move_on_after(2.0):  # watch window for retries after the cancel
            await self.provider.ledger.wait_for(
                lambda led: [r for r in led.requests_after(t_cancel)] or None, 2.0
            )
        late = self.provider.ledger.requests_after(t_cancel)
        facts["requests_after_cancel"] = [
            {"ordinal": r.ordinal, "path": r.path, "role": r.role.value} for r in late
        ]
        facts["events_after_cancel"] = self.provider.ledger.events_after(t_cancel)
        return facts

    async def run(self) -> None:
        began = time.monotonic_ns()
        session = await self.target.new_session()
        self.step("session", session=session, new_session_ms=_ms(time.monotonic_ns() - began))
        self.step("turn A (completes)", **await self.turn(session, "A"))
        self.step("turn B (held, cancelled)", **await self.cancelled_turn(session))
        self.step("turn C (after the cancel)", **await self.turn(session, "C"))
        if Capability.TRANSCRIPT in self.target.capabilities:
            try:
                snap = await self.target.transcript(session)
                roles = [e.role for e in snap.entries]
                has_b = any(self.tags["B"] in e.content for e in snap.entries)
                self.step("transcript", roles=roles, cancelled_prompt_kept=has_b)
            except Exception as exc:
                self.step("transcript failed", error=f"{type(exc).__name__}: {exc}"[:300])


class _Host:
    """Runs the target's start..stop in one task, as the harness runner does (task groups
    that a target opens in start() must be closed by the same task)."""

    def __init__(self, target: Target, endpoint: Endpoint) -> None:
        self.target, self.endpoint = target, endpoint
        self.started, self.finish, self.stopped = anyio.Event(), anyio.Event(), anyio.Event()
        self.error: BaseException | None = None
        self.start_ns = self.stop_ns = 0

    async def run(self) -> None:
        began = time.monotonic_ns()
        try:
            await self.target.start(self.endpoint, AgentSettings())
        except Exception as exc:
            self.error = exc
            self.started.set()
            self.stopped.set()
            return
        self.start_ns = time.monotonic_ns() - began
        self.started.set()
        try:
            await self.finish.wait()
        finally:
            began = time.monotonic_ns()
            await self.target.stop()  # no scope around it: its task group was opened bare
            self.stop_ns = time.monotonic_ns() - began
            self.stopped.set()


async def run_probe(target_name: str, kind: ProviderKind, patience: float) -> dict[str, Any]:
    target = make_target(target_name)
    async with FakeProvider() as provider:
        endpoint = Endpoint(kind, provider.url(kind))
        probe = Probe(target, provider, kind, patience)
        host = _Host(target, endpoint)
        async with anyio.create_task_group() as tg:
            tg.start_soon(host.run)
            await host.started.wait()
            if host.error is not None:
                probe.step("start failed", error=f"{type(host.error).__name__}: {host.error}"[:900])
            else:
                probe.step("started", start_ms=_ms(host.start_ns))
                try:
                    with anyio.fail_after(patience * 6):
                        await probe.run()
                except Exception as exc:
                    probe.step("probe stopped", error=f"{type(exc).__name__}: {exc}"[:600])
            host.finish.set()
            await host.stopped.wait()
            probe.step("stopped", stop_ms=_ms(host.stop_ns))
        with anyio.move_on_after(2):
            await provider.ledger.wait_for(lambda led: not led.open_connections() or None, 2)
        report = probe.report
        report["tags"] = probe.tags
        report["open_after_stop"] = [c.id for c in provider.ledger.open_connections()]
        report["requests"] = [describe(r, probe.t0, probe.tags) for r in provider.ledger.requests()]
        report["connections"] = [
            {
                "id": c.id,
                "opened_ms": _ms(c.opened_ns - probe.t0),
                "closed_ms": _ms(c.closed_ns - probe.t0) if c.closed_ns else None,
                "closed_by": c.closed_by.value if c.closed_by else None,
                "close_kind": c.close_kind.value if c.close_kind else None,
                "requests": [r.ordinal for r in c.requests],
            }
            for c in provider.ledger.connections()
        ]
        report["notes"] = [
            {"at_ms": _ms(n.t_ns - probe.t0), "what": n.what} for n in target.notes()
        ]
        process = getattr(target, "_process", None)  # AcpTarget: the agent's stderr tail
        if process is not None and hasattr(process, "stderr_tail"):
            report["stderr_tail"] = process.stderr_tail()[-1500:]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.probe")
    parser.add_argument("target")
    parser.add_argument("kind", type=ProviderKind.parse, metavar="KIND")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--patience", type=float, default=45.0, help="seconds per wait")
    args = parser.parse_args(argv)
    print(f"probe {args.target} over {args.kind}", flush=True)
    report = anyio.run(run_probe, args.target, args.kind, args.patience)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for req in report["requests"]:
        body = req["body"]
        print(
            f"  #{req['ordinal']:<3} {req['at_ms']:>9.1f}ms {req['method']} {req['path']} "
            f"{req['role']} of {req['prompt']} model={req['model']} stream={req['stream']} "
            f"status={req['status']} tags={body.get('tags')} limit="
            f"{[body[k] for k in (*TOKEN_LIMIT_KEYS, 'maxOutputTokens') if k in body]} "
            f"tools={body.get('tools')} last={body.get('last_text', '')[:70]!r}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())


# ------------------------------------------------------------------------ the table


def probe_row(report: Mapping[str, Any]) -> dict[str, Any]:
    """The facts of one probe report that the lead and maintainers need."""
    steps = {s["what"].split(" (")[0]: s for s in report.get("steps", [])}
    held = steps.get("turn B", {})
    close = held.get("close") or {}
    requests = report.get("requests", [])
    roles = Counter(r.get("role", "?") for r in requests)
    return {
        "target": report.get("target", "?"),
        "kind": report.get("kind", "?"),
        "start_ms": steps.get("started", {}).get("start_ms"),
        "new_session_ms": steps.get("session", {}).get("new_session_ms"),
        "first_request_ms": steps.get("turn A", {}).get("first_request_ms"),
        "held": held.get("held"),
        "close": (
            f"{close.get('by')} {close.get('kind')} +{close.get('after_cancel_ms')} ms"
            if close.get("by")
            else ("not closed in 5 s" if held.get("held") else "-")
        ),
        "stop_reason": held.get("stop_reason"),
        "after_cancel": len(held.get("requests_after_cancel", []) or []),
        "requests": len(requests),
        "main": roles.get("main", 0),
        "side": roles.get("side", 0),
        "probe": roles.get("probe", 0),
        "after_C": steps.get("turn C", {}).get("stop_reason"),
        "stop_ms": steps.get("stopped", {}).get("stop_ms"),
        "error": next((s.get("error") for s in report.get("steps", []) if s.get("error")), ""),
    }


def probe_table(reports: Iterable[Mapping[str, Any]]) -> str:
    """The probe reports as a markdown table (empty without reports)."""
    rows = [probe_row(r) for r in reports]
    if not rows:
        return ""
    head = (
        "| agent / kind | start ms | session ms | 1st main call ms | close after cancel | "
        "turn B | requests after cancel | requests: main / side / probe | turn C | stop ms |"
    )
    lines = [
        "## Probe: one session, three turns, the middle one held and cancelled",
        "",
        "No calibration: requests are classified from their conversation alone, so a title "
        "call shaped like a turn's counts as a second main call here. Raw reports: "
        "`probes/*.json` in the report directory.",
        "",
        head,
        "| --- |" + " --- |" * 9,
    ]
    for r in rows:
        lines.append(
            f"| {r['target']} / {r['kind']} | {r['start_ms']} | {r['new_session_ms']} | "
            f"{r['first_request_ms']} | {r['close']} | {r['stop_reason']} | "
            f"{r['after_cancel']} | {r['requests']}: {r['main']} / {r['side']} / "
            f"{r['probe']} | {r['after_C']} | {r['stop_ms']} |"
        )
    errors = [f"- {r['target']} / {r['kind']}: {r['error']}" for r in rows if r["error"]]
    if errors:
        lines += ["", "Probe errors:", "", *errors]
    return "\n".join(lines) + "\n"
