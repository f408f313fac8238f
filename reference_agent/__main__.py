"""`python -m reference_agent {serve|acp|chat}`: the reference agent's front doors.

Common options choose the provider endpoint (defaults from OPENAI_BASE_URL,
ANTHROPIC_BASE_URL, *_API_KEY, SSL_CERT_FILE), the store and the defects
(`--defect NAME`, repeatable, or REFERENCE_AGENT_DEFECTS=a,b).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from reference_agent.config import PROVIDER_KINDS, AgentConfig, ConfigError
from reference_agent.defects import Defects, UnknownDefectError


def common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--provider", choices=PROVIDER_KINDS, default=PROVIDER_KINDS[0])
    parser.add_argument("--base-url", default=None, help="provider base URL (default: from env)")
    parser.add_argument("--api-key", default=None, help="API key (default: from env)")
    parser.add_argument("--model", default=None, help="model or deployment name")
    parser.add_argument("--store", default=":memory:", help="SQLite file (default: in memory)")
    parser.add_argument("--defect", action="append", default=[], metavar="NAME")
    parser.add_argument("--stale-timeout", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--turn-timeout", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--max-retries", type=int, default=None, metavar="N")
    parser.add_argument("--backoff-base", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--backoff-max", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--compaction-threshold", type=int, default=None, metavar="CHARS")
    parser.add_argument("--max-output-tokens", type=int, default=None, metavar="N")
    parser.add_argument(
        "--seed", type=int, default=None, metavar="N", help="seed of the retry jitter"
    )
    parser.add_argument(
        "--no-stream", action="store_true", help="plain JSON model responses, no streaming"
    )
    parser.add_argument(
        "--no-memory-extraction",
        action="store_true",
        help="skip the post-turn background memory call",
    )


def config_from(args: argparse.Namespace) -> AgentConfig:
    """The agent configuration: environment first, flags over it."""
    config = AgentConfig.from_env(args.provider)
    changes: dict[str, object] = {}
    if args.base_url:
        changes["base_url"] = args.base_url
    if args.api_key:
        changes["api_key"] = args.api_key
    if args.model:
        changes["model"] = args.model
    if args.stale_timeout is not None:
        changes["stale_timeout"] = args.stale_timeout
    if args.turn_timeout is not None:
        changes["turn_timeout"] = args.turn_timeout
    for flag, setting in (
        ("max_retries", "max_retries"),
        ("backoff_base", "backoff_base"),
        ("backoff_max", "backoff_max"),
        ("compaction_threshold", "compaction_threshold_chars"),
        ("max_output_tokens", "max_output_tokens"),
        ("seed", "seed"),
    ):
        if getattr(args, flag) is not None:
            changes[setting] = getattr(args, flag)
    if args.no_memory_extraction:
        changes["memory_extraction"] = False
    if args.no_stream:
        changes["stream"] = False
    if args.defect:
        changes["defects"] = Defects.of([*config.defects.active, *args.defect])
    return config.with_(**changes)


class FrontDoor(Protocol):
    def __call__(self, config: AgentConfig, args: argparse.Namespace) -> int: ...


@dataclass(frozen=True, slots=True)
class _Door:
    module: str
    function: str


# Each front door lives in its own module and is loaded only when asked for.
FRONT_DOORS = {
    "serve": _Door("reference_agent.http_api", "serve_main"),
    "acp": _Door("reference_agent.acp_agent", "acp_main"),
    "chat": _Door("reference_agent.chat", "chat_main"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference_agent")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in (
        ("serve", "HTTP+SSE API (docs/http-api.md)"),
        ("acp", "Agent Client Protocol over stdio"),
        ("chat", "interactive terminal; Esc or Ctrl+C cancels the running turn"),
    ):
        sub = commands.add_parser(name, help=help_text)
        common_options(sub)
        if name == "serve":
            sub.add_argument("--host", default="127.0.0.1")
            sub.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        config = config_from(args)
        front_door = FRONT_DOORS[args.command]
        module = importlib.import_module(front_door.module)
        run: FrontDoor = getattr(module, front_door.function)
        return run(config, args)
    except (ConfigError, UnknownDefectError) as exc:
        print(f"reference_agent: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
