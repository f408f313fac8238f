"""Calibration: one plain turn, before the cases, to learn what the agent's turn calls look like.

The fake provider tells a turn's own model call from side traffic by the conversation it
carries (fake_providers.roles). One kind of side call defeats that: a title or summary
generated from the prompt, sent with the prompt as its user message. It still differs from
the turn call in what it offers the model: real agents send their tools with every turn
call and none with a title call, or use a smaller model for it. A plain turn shows both
calls; the richest one (most tools, then largest body) is the turn call. When the turn
showed calls of more than one shape, the provider of every case gets that profile.

Once per run for each provider kind; nothing the agent says about itself is used.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from fake_providers import FakeProvider, RequestRecord, WaitTimeout
from fake_providers.conversation import read_shape
from fake_providers.kinds import ProviderKind
from fake_providers.roles import MainCallProfile, Role
from harness.prompts import Prompt, new_tag
from harness.target import AgentSettings, Endpoint, Target
from harness.target_host import TargetHost

TURN_LIMIT = 30.0  # the plain turn may take this long (a cold agent warms up on it)
SETTLE = 1.0  # after the turn: side calls that follow it (titles, suggestions) arrive
STOP_LIMIT = 10.0  # then the agent may take this long to stop
DEFAULT_STARTUP = 30.0


@dataclass(frozen=True, slots=True)
class Calibration:
    """What one plain turn showed of the agent's calls on a provider kind."""

    kind: ProviderKind
    profile: MainCallProfile | None  # None: nothing to tell apart, or the turn failed
    turn_calls: int = 0
    look_alikes: int = 0  # side calls that would have passed for turn calls
    started_s: float = 0.0
    error: str = ""

    def describe(self) -> str:
        head = f"calibration on {self.kind}"
        if self.error:
            return f"{head}: {self.error}; main calls are told apart by structure alone"
        if self.profile is None:
            return f"{head}: one kind of turn call ({self.turn_calls}), nothing to tell apart"
        return (
            f"{head}: turn calls offer {self.profile.describe()}; {self.look_alikes} "
            "look-alike side call(s) will be told apart by that"
        )


def shape_of(request: RequestRecord, kind: ProviderKind) -> tuple[int, str, int]:
    """(tools offered, model, body size) of a recorded model request."""
    try:
        body = json.loads(request.body)
    except ValueError:
        return 0, request.model or "", request.body_size
    tools = read_shape(kind, body).tools if isinstance(body, dict) else 0
    return tools, request.model or "", request.body_size


def learn(requests: list[RequestRecord], tag: str, kind: ProviderKind) -> Calibration:
    """The profile from the requests of one plain turn whose prompt carried `tag`."""
    candidates = [r for r in requests if r.role is Role.MAIN and r.prompt == tag]
    if not candidates:
        return Calibration(kind, None, error="no model call of the plain turn reached the provider")
    shapes = [shape_of(r, kind) for r in candidates]
    signatures = {(tools, model) for tools, model, _ in shapes}
    if len(signatures) == 1:
        return Calibration(kind, None, turn_calls=len(candidates))
    tools, _, _ = max(shapes, key=lambda s: (s[0], s[2]))
    richest = [s for s in shapes if s[0] == tools]
    profile = MainCallProfile(tools, frozenset(model for _, model, _ in richest if model))
    return Calibration(kind, profile, len(richest), len(shapes) - len(richest))


async def calibrate(
    make_target: Callable[[], Target], kind: ProviderKind, *, tls: bool
) -> Calibration:
    """Start the agent against a fresh provider, run one plain turn, learn, stop."""
    try:
        target = make_target()
    except Exception as exc:
        return Calibration(kind, None, error=f"cannot make the target ({exc})")
    startup = float(getattr(target, "startup_timeout", DEFAULT_STARTUP))
    async with FakeProvider(tls=tls) as provider:
        ca_file = str(provider.tls.ca_path) if provider.tls is not None else None
        endpoint = Endpoint(kind, provider.url(kind), ca_file=ca_file)
        host = TargetHost(target, endpoint, AgentSettings())
        async with anyio.create_task_group() as tg:
            tg.start_soon(host.run)
            try:
                with anyio.fail_after(startup):
                    await host.started.wait()
                if host.start_error is not None:
                    error = f"the agent did not start ({host.start_error})"
                    return Calibration(kind, None, error=error)
                with anyio.fail_after(TURN_LIMIT):
                    found = await _plain_turn(target, provider, kind)
            except TimeoutError:
                found = Calibration(kind, None, error="the plain turn did not end in time")
            except Exception as exc:
                found = Calibration(kind, None, error=f"the plain turn failed ({exc})")
            finally:
                host.finish.set()
                with anyio.move_on_after(STOP_LIMIT):
                    await host.stopped.wait()
                tg.cancel_scope.cancel()
                host.force_cancel()  # a stop() stuck in a shielded scope
    return Calibration(
        found.kind, found.profile, found.turn_calls, found.look_alikes, host.took, found.error
    )


async def _plain_turn(target: Target, provider: FakeProvider, kind: ProviderKind) -> Calibration:
    prompt = Prompt("Say hello.", new_tag(random.SystemRandom()))
    provider.expect_prompt(prompt.tag)
    session = await target.new_session()
    turn = await target.submit(session, prompt.text)
    out = await target.wait_outcome(turn, TURN_LIMIT)
    if out.stop_reason != "completed":
        return Calibration(kind, None, error=f"the plain turn ended {out.stop_reason}")
    await anyio.sleep(SETTLE / 2)  # a watch window for the calls that follow a turn
    with contextlib.suppress(WaitTimeout):
        await provider.ledger.wait_for(
            lambda led: all(r.outcome for r in led.requests()), SETTLE / 2
        )
    return learn(provider.ledger.requests(), prompt.tag, kind)


def calibration_budget(make_target: Callable[[], Target]) -> float:
    """The longest a calibration may take: start-up, the plain turn, the stop."""
    try:
        startup = float(getattr(make_target(), "startup_timeout", DEFAULT_STARTUP))
    except Exception:
        startup = DEFAULT_STARTUP
    return startup + TURN_LIMIT + STOP_LIMIT
