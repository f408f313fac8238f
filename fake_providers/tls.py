"""TLS for the fake provider: a throwaway trustme CA and a leaf for every loopback name.

The CA is written to a PEM file so agents in other processes can trust it through
`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE` or `NODE_EXTRA_CA_CERTS`.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True, slots=True)
class TLSMaterial:
    """A server context plus the CA a client must trust to talk to it."""

    server_context: ssl.SSLContext
    ca_pem: bytes
    ca_path: Path

    def env(self) -> dict[str, str]:
        """The variables that make common HTTP stacks trust our CA."""
        path = str(self.ca_path)
        return {"SSL_CERT_FILE": path, "REQUESTS_CA_BUNDLE": path, "NODE_EXTRA_CA_CERTS": path}

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        ctx.load_verify_locations(cadata=self.ca_pem.decode())
        return ctx


def make_tls(directory: Path, extra_names: tuple[str, ...] = ()) -> TLSMaterial:
    """Mint a CA and leaf, write `ca.pem` into `directory`, return the server context."""
    ca = trustme.CA(organization_name="cancel-harness fake provider")
    leaf = ca.issue_cert(*LOOPBACK_NAMES, *extra_names)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    context.set_alpn_protocols(["http/1.1"])
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "ca.pem"
    pem: bytes = ca.cert_pem.bytes()
    path.write_bytes(pem)
    return TLSMaterial(context, pem, path)
