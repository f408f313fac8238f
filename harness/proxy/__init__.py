"""mitmproxy in front of the real provider hosts, for agents that cannot be pointed elsewhere.

`ProxyService` runs mitmproxy (the `proxy` extra) on its own thread; each route is a port
whose traffic for the provider hosts goes to one case's fake provider (or, when asked, the
real host). `AgentLedger` records the agent's side of every connection. Targets go through
it with `via = "proxy"` (TOML) or `run --via proxy`; `cancel-harness proxy` runs it for a
person. See docs/proxy.md.
"""

from harness.proxy.hosts import DEFAULT_HOSTS, HostSet, ProxySetupError, real_base_url
from harness.proxy.ledger import AgentConnection, AgentLedger, ProxiedRequest

__all__ = [
    "DEFAULT_HOSTS",
    "AgentConnection",
    "AgentLedger",
    "HostSet",
    "ProxiedRequest",
    "ProxySetupError",
    "real_base_url",
]
