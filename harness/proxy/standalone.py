"""`cancel-harness proxy`: mitmproxy in front of the provider hosts, for a person to run.

By default it starts a fake provider and routes the provider hosts to it; with
`--upstream URL` it routes to a fake provider already running (`cancel-harness serve`), and
with `--pass-through` (a machine with network, and only when asked) to the real hosts.
It prints the proxy URL, the CA file and the environment an agent needs, then one live
line per event on both legs: the agent's side (from the proxy) and the provider's ledger.
"""

from __future__ import annotations

import os
import ssl
import sys
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import anyio
import anyio.to_thread

from fake_providers import FakeProvider
from fake_providers.ledger import now_ns
from harness.proxy.hosts import REAL_BASE_URLS, HostSet, ProxySetupError, check_host_pattern
from harness.proxy.relay import PassThroughRelay
from harness.proxy.service import ProxyRoute, ProxyService, is_loopback
from harness.serve import LiveLog


def check_upstream(url: str) -> str:
    """The origin of a fake provider given as `--upstream` (plain http on this machine)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        raise ProxySetupError(
            f"--upstream {url!r}: give a fake provider's origin, such as http://127.0.0.1:43117"
        )
    if not is_loopback(parts.hostname):
        raise ProxySetupError(
            f"--upstream {url!r} is not on this machine; the proxy routes to a loopback "
            "fake provider (use --pass-through for the real hosts)"
        )
    return f"http://{parts.netloc}"


def banner(route: ProxyRoute, hosts: HostSet, where: str) -> list[str]:
    env = route.env()
    shown = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS")
    return [
        f"cancel-harness proxy listening on http://{route.host}:{route.port}",
        f"  intercepts        {hosts.describe()}",
        f"  sends them to     {where}",
        f"  CA file           {route.ca_file}",
        "  agent environment " + " ".join(f"{k}={env[k]}" for k in shown),
        "  agents keep their real base URLs: " + ", ".join(sorted(set(REAL_BASE_URLS.values()))),
    ]


def write_env_file(path: Path, route: ProxyRoute) -> None:
    """`export K=V` lines to source in the agent's shell (owner-only: it may hold a token)."""
    lines = [f"export {key}='{value}'\n" for key, value in route.env().items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.writelines(lines)


async def run_proxy(
    *,
    host: str,
    port: int,
    faults: list[str],
    intercept: list[str],
    pass_through: bool,
    upstream: str | None,
    confdir: Path | None,
    env_file: Path | None,
    upstream_ca: Path | None = None,
    upstream_for: dict[str, str] | None = None,
    out: TextIO = sys.stdout,
    ready: anyio.Event | None = None,
) -> None:
    """Run until cancelled (Ctrl+C). Raises ProxySetupError (and FaultSpecError) on bad input."""
    hosts = HostSet.with_extra(intercept)
    if pass_through and upstream:
        raise ProxySetupError(
            "--pass-through sends the provider hosts to the real services, --upstream to a "
            "fake provider: drop one or the other"
        )
    if (upstream_ca or upstream_for) and not pass_through:
        raise ProxySetupError("--upstream-ca and --upstream-for go with --pass-through")
    origin = check_upstream(upstream) if upstream is not None else None
    start = now_ns()

    def show(line: str) -> None:
        print(f"{(now_ns() - start) / 1e9:9.3f}s  {line}", file=out, flush=True)

    service = ProxyService(hosts=hosts, confdir=confdir, on_event=show)
    await anyio.to_thread.run_sync(service.start)
    try:
        if pass_through:
            relay = _relay(faults, upstream_ca, upstream_for or {})
            try:
                relay.ledger.subscribe(LiveLog(out, start))
                where = "the real provider hosts (pass-through" + (
                    ", through the fault rules)" if faults else ")"
                )
                origin = relay.origin
                await _serve(
                    service, host, port, origin, hosts, where, env_file, out, ready, relay=True
                )
            finally:
                await anyio.to_thread.run_sync(relay.close)
            return
        if upstream is not None:
            where = origin or ""
            await _serve(service, host, port, origin, hosts, where, env_file, out, ready)
            return
        async with FakeProvider(faults=tuple(faults)) as provider:
            provider.ledger.subscribe(LiveLog(out, start))
            where = f"the fake provider at {provider.origin} (ledger: /__harness/ledger)"
            await _serve(service, host, port, provider.origin, hosts, where, env_file, out, ready)
    finally:
        await anyio.to_thread.run_sync(service.close)


def _relay(
    faults: list[str], upstream_ca: Path | None, upstream_for: dict[str, str]
) -> PassThroughRelay:
    verify: ssl.SSLContext | bool = True
    if upstream_ca is not None:
        try:
            verify = ssl.create_default_context(cafile=str(upstream_ca))
        except (OSError, ssl.SSLError) as exc:
            raise ProxySetupError(f"--upstream-ca {upstream_ca}: cannot load it ({exc})") from None
    return PassThroughRelay(faults=tuple(faults), verify=verify, upstream_for=upstream_for).start()


def parse_upstream_for(items: list[str]) -> dict[str, str]:
    """`HOST=https://ADDR:PORT` pairs: where a host's pass-through traffic goes instead."""
    found: dict[str, str] = {}
    for item in items:
        host, sep, url = item.partition("=")
        parts = urlsplit(url)
        if not sep or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ProxySetupError(
                f"--upstream-for {item!r}: write HOST=URL, such as "
                "api.openai.com=https://127.0.0.1:8443"
            )
        found[check_host_pattern(host)] = f"{parts.scheme}://{parts.netloc}"
    return found


async def _serve(
    service: ProxyService,
    host: str,
    port: int,
    upstream: str | None,
    hosts: HostSet,
    where: str,
    env_file: Path | None,
    out: TextIO,
    ready: anyio.Event | None,
    *,
    relay: bool = False,
) -> None:
    route = await service.open_route("proxy", upstream, host=host, port=port, relay=relay)
    for line in banner(route, hosts, where):
        print(line, file=out)
    if route.token is not None:
        print("  off loopback: clients must use the proxy URL above (with its token)", file=out)
    if env_file is not None:
        write_env_file(env_file, route)
        print(f"  environment file  {env_file} (source it in the agent's shell)", file=out)
    print("waiting for the agent's first connection (none: it ignores HTTPS_PROXY)", file=out)
    out.flush()
    if ready is not None:
        ready.set()
    await anyio.sleep_forever()
