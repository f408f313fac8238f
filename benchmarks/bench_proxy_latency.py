"""Cancel-to-close latency through `cancel-harness proxy`, beside the same cancel made directly.

    python -m benchmarks.bench_proxy_latency [--count N] [--quick]

Two reference agents (`reference_agent.agent.Agent`, memory extraction off) in one process,
taking turns on the same fake provider (one `FakeProvider` in the benchmark's loop):

* direct: base URL `http://127.0.0.1:PORT/v1`, as `cancel-harness run` gives it;
* proxy: base URL `https://api.openai.com/v1` (the real one) and `HTTPS_PROXY` to a route of
  the proxy (mitmproxy on its own thread, as `--via proxy` runs it), trusting its CA.

Each iteration: the provider writes 3 events and parks before event 4 at a fresh gate; once
the gate is reached and 20 ms have passed (the relayed events reach the proxied agent), t0 =
`time.monotonic_ns()` right before `await agent.cancel(session)`. latency = the provider
ledger's `closed_ns` for that connection (it read the client's FIN/RST) - t0. For the proxy
column the proxy's own stamp of the agent's close (`AgentLedger`) splits it into agent ->
proxy and proxy -> provider. Iterations alternate direct, proxy, ... so machine noise lands on
both; 5 warm-up pairs are dropped. Writes reports/bench/bench_proxy_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import anyio

from fake_providers import FakeProvider
from fake_providers.ledger import Closer
from harness.proxy.service import ProxyRoute, ProxyService
from reference_agent.agent import Agent
from reference_agent.config import AgentConfig

WAIT_S = 5.0
WARMUP = 5


def agent_config(base_url: str, ca_file: str | None) -> AgentConfig:
    return AgentConfig(
        provider="openai-chat",
        base_url=base_url,
        api_key="sk-bench",
        ca_file=ca_file,
        memory_extraction=False,
        max_retries=0,
    )


async def once(
    provider: FakeProvider, agent: Agent, gate_name: str, proxy: ProxyService | None, route: str
) -> dict[str, float]:
    provider.add_fault(f"stream=true,hold-before=4,gate={gate_name}", times=1)
    session = await agent.new_session()
    turn = await agent.submit(session, "hi")
    gate = provider.gate(gate_name)
    await gate.wait_reached(timeout=WAIT_S)
    await anyio.sleep(0.02)  # the three events reach the agent (through the proxy, too)
    request = provider.ledger.requests()[-1]
    t0 = time.monotonic_ns()
    await agent.cancel(session)
    conn = await provider.ledger.wait_for_close(request.connection_id, WAIT_S)
    if conn.closed_by is not Closer.CLIENT or conn.closed_ns is None:
        raise RuntimeError(f"connection #{conn.id} was not closed by the client")
    gate.release()
    outcome = await turn.wait(WAIT_S)
    if outcome.stop_reason.value != "cancelled":
        raise RuntimeError(f"the turn ended {outcome.stop_reason}, not cancelled")
    sample = {"latency_ms": (conn.closed_ns - t0) / 1e6}
    if proxy is not None:
        seen = await proxy.ledger.wait_for(
            lambda led: next((c for c in led.connections(route)[::-1] if not c.open), None),
            WAIT_S,
        )
        assert seen.closed_ns is not None
        sample["agent_to_proxy_ms"] = (seen.closed_ns - t0) / 1e6
        sample["proxy_to_provider_ms"] = (conn.closed_ns - seen.closed_ns) / 1e6
        # The request's way in: the proxy read its headers -> the provider read them.
        sent = seen.requests[-1].started_ns
        sample["request_proxy_to_provider_ms"] = (request.started_ns - sent) / 1e6
        proxy.ledger.forget(route)
    return sample


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


async def measure(count: int) -> dict[str, list[dict[str, float]]]:
    proxy = ProxyService().start()
    try:
        async with FakeProvider() as provider:
            route: ProxyRoute = await proxy.open_route("bench", provider.origin)
            os.environ.update(route.env())  # the proxied agent's httpx client reads them
            direct_agent = Agent(agent_config(provider.url("openai"), None))
            proxied_agent = Agent(agent_config("https://api.openai.com/v1", route.ca_file))
            samples: dict[str, list[dict[str, float]]] = {"direct": [], "proxy": []}
            async with direct_agent as direct, proxied_agent as proxied:
                for i in range(count + WARMUP):
                    d = await once(provider, direct, f"d{i}", None, "")
                    p = await once(provider, proxied, f"p{i}", proxy, "bench")
                    if i >= WARMUP:
                        samples["direct"].append(d)
                        samples["proxy"].append(p)
            await proxy.close_route(route)
    finally:
        proxy.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="cancels per column")
    parser.add_argument("--quick", action="store_true", help="30 cancels per column")
    args = parser.parse_args()
    count = 30 if args.quick else args.count
    began = time.perf_counter()
    samples = anyio.run(measure, count, backend="asyncio")
    figures: dict[str, Any] = {}
    print(f"cancel-to-close, reference agent, {count} cancels per column (ms)")
    print(f"{'column':<28}{'p50':>9}{'p99':>9}{'max':>9}")
    rows = [("direct", "latency_ms"), ("proxy", "latency_ms")]
    rows += [("proxy", "agent_to_proxy_ms"), ("proxy", "proxy_to_provider_ms")]
    rows += [("proxy", "request_proxy_to_provider_ms")]
    for column, key in rows:
        values = [s[key] for s in samples[column]]
        name = column if key == "latency_ms" else f"  {key.removesuffix('_ms')}"
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        figures[f"{column}.{key}"] = {"p50": p50, "p99": p99, "max": max(values)}
        print(f"{name:<28}{p50:>9.3f}{p99:>9.3f}{max(values):>9.3f}")
    direct_p50 = figures["direct.latency_ms"]["p50"]
    proxy_p50 = figures["proxy.latency_ms"]["p50"]
    print(
        f"proxy/direct p50: {proxy_p50 / direct_p50:.1f}x; mean direct "
        f"{statistics.mean(s['latency_ms'] for s in samples['direct']):.3f} ms; "
        f"wall {time.perf_counter() - began:.0f} s"
    )
    out = Path("reports/bench/bench_proxy_latency.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"count": count, "figures": figures, "samples": samples}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
