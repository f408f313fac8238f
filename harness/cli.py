"""The `cancel-harness` command line.

Exit codes: 0 success, 1 a check failed, 2 bad usage or setup (one line, no traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from fake_providers import FaultSpecError, ProviderStartError
from fake_providers.provider import BASE_PATHS

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input from the user; printed as one line with exit code 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cancel-harness",
        description="Reliability test harness for the cancellation paths of LLM agents.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run a standalone fake provider to point an agent at",
        description="Run a fake LLM provider on loopback and show every connection live.",
    )
    serve.add_argument(
        "--provider",
        action="append",
        choices=sorted(BASE_PATHS),
        default=[],
        help="only print this provider's base URL (repeatable; all kinds are always served)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    serve.add_argument("--tls", action="store_true", help="serve https with a throwaway CA")
    serve.add_argument(
        "--tls-dir", type=Path, default=None, help="where to write ca.pem (default: a temp dir)"
    )
    serve.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="fault rule such as 'pace=100ms,hang-after=5' (repeatable; first match wins)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        parser.print_help()
        return EXIT_USAGE
    except (UsageError, FaultSpecError, ProviderStartError) as exc:
        print(f"cancel-harness: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _serve(args: argparse.Namespace) -> int:
    from fake_providers.faults import parse_rule
    from harness.serve import serve

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is out of range; use 0-65535 (0 picks a free port)")
    for spec in args.fault:
        parse_rule(spec)  # fail before binding anything
    try:
        anyio.run(
            lambda: serve(
                host=args.host,
                port=args.port,
                tls=args.tls,
                faults=args.fault,
                providers=args.provider,
                tls_dir=args.tls_dir,
            )
        )
    except KeyboardInterrupt:
        print("stopped.", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
