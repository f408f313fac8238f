"""Which hosts the proxy intercepts, and what an agent pointed at the proxy is told (sans-IO).

An agent that cannot be pointed at a fake provider still honours `HTTPS_PROXY`: it keeps
its real base URL (`https://api.openai.com/v1`) and the proxy answers for that host. Only
the provider hosts are intercepted; anything else is refused, so nothing leaves the machine
by accident and telemetry to other hosts shows up as a refusal, not as silence.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fake_providers.kinds import ProviderKind

DEFAULT_HOSTS = (
    "api.openai.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com",
    "*.openai.azure.com",
)
# What `{base_url}` expands to for a target that goes through the proxy: the real service's
# own base URL (Azure has none of its own: any resource under *.openai.azure.com will do).
REAL_BASE_URLS: Mapping[ProviderKind, str] = {
    ProviderKind.OPENAI_CHAT: "https://api.openai.com/v1",
    ProviderKind.OPENAI_RESPONSES: "https://api.openai.com/v1",
    ProviderKind.ANTHROPIC: "https://api.anthropic.com",
    ProviderKind.AZURE: "https://cancel-harness.openai.azure.com",
    ProviderKind.GEMINI: "https://generativelanguage.googleapis.com",
}
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


class ProxySetupError(ValueError):
    """The proxy cannot be set up as asked; the message names the bad value and the fix."""


def check_host_pattern(text: str) -> str:
    """A host name, or `*.` and a domain; lower-cased. One-line ProxySetupError otherwise."""
    host = text.strip().lower().rstrip(".")
    bare = host[2:] if host.startswith("*.") else host
    labels = bare.split(".")
    if not bare or len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ProxySetupError(
            f"--intercept {text!r} is not a host name; give one such as api.example.com, "
            "or *.example.com for every host under a domain"
        )
    return host


@dataclass(frozen=True, slots=True)
class HostSet:
    """The hosts the proxy answers for: exact names and `*.domain` patterns."""

    patterns: tuple[str, ...] = DEFAULT_HOSTS

    @classmethod
    def with_extra(cls, extra: Iterable[str]) -> HostSet:
        """The default provider hosts plus `extra` (checked)."""
        added = tuple(check_host_pattern(h) for h in extra)
        return cls(tuple(dict.fromkeys((*DEFAULT_HOSTS, *added))))

    def intercepts(self, host: str) -> bool:
        name = host.strip().lower().rstrip(".")
        return any(fnmatch.fnmatchcase(name, p) for p in self.patterns)

    def describe(self) -> str:
        return ", ".join(self.patterns)


def real_base_url(kind: ProviderKind) -> str:
    return REAL_BASE_URLS[kind]


def agent_environment(proxy_url: str, ca_file: str) -> dict[str, str]:
    """What an agent's process needs to go through the proxy and trust its CA.

    Both spellings of the proxy variables (curl reads only the lower-case `http_proxy`,
    some Go and Node stacks only the upper-case). Loopback stays direct, so the harness's
    own traffic with the agent never crosses the proxy. `NODE_USE_ENV_PROXY=1` makes
    Node's built-in fetch honour `HTTPS_PROXY` (Node >= 22.21 / 24.5; older ones ignore it).
    """
    no_proxy = ",".join(LOOPBACK)
    env: dict[str, str] = {}
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = proxy_url
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    env["NODE_USE_ENV_PROXY"] = "1"
    env |= {"SSL_CERT_FILE": ca_file, "REQUESTS_CA_BUNDLE": ca_file, "NODE_EXTRA_CA_CERTS": ca_file}
    return env
