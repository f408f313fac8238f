"""Start a third-party agent in a fresh config home: `python -m conformance.launch AGENT -- CMD...`.

Every agent process gets its own HOME (and XDG, Claude and Codex dirs inside it) under
`$CONFORMANCE_CACHE/homes/AGENT/`, seeded from `conformance/homes/AGENT/`, so it never reads
the user's config, never finds a login, and two cases under `--jobs 2` never share state.
Seed files may hold `@BASE_URL@`, `@API_KEY@`, `@PROVIDER@`, `@CA_FILE@` and `@HOME@`, filled
from the CONFORMANCE_* variables the target's `env` sets from the harness's templates. The
home is kept after the agent exits: what the agent persisted is evidence.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

SEEDS = Path(__file__).parent / "homes"
TOKENS = {
    "@BASE_URL@": "CONFORMANCE_BASE_URL",
    "@API_KEY@": "CONFORMANCE_API_KEY",
    "@PROVIDER@": "CONFORMANCE_PROVIDER",
    "@CA_FILE@": "CONFORMANCE_CA_FILE",
}
CA_VARIABLES = ("NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")


class LaunchError(RuntimeError):
    """The launcher was called wrongly; the message says how to call it."""


def render(text: str, values: Mapping[str, str]) -> str:
    """Replace each `@TOKEN@` with its value (unknown tokens are left alone)."""
    for token, value in values.items():
        text = text.replace(token, value)
    return text


def token_values(env: Mapping[str, str], home: Path) -> dict[str, str]:
    values = {token: env.get(var, "") for token, var in TOKENS.items()}
    values["@HOME@"] = str(home)
    return values


def seed_home(agent: str, home: Path, env: Mapping[str, str], seeds: Path = SEEDS) -> list[Path]:
    """Copy the agent's seed files into `home`, rendered; returns the files written."""
    source = seeds / agent
    written: list[Path] = []
    if not source.is_dir():
        return written
    values = token_values(env, home)
    for path in sorted(source.rglob("*")):
        if not path.is_file():
            continue
        dest = home / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(render(path.read_text(encoding="utf-8"), values), encoding="utf-8")
        written.append(dest)
    return written


def home_environment(home: Path, env: Mapping[str, str]) -> dict[str, str]:
    """The agent's environment: every config and state directory points into `home`."""
    out = dict(env)
    out.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        XDG_CACHE_HOME=str(home / ".cache"),
        CLAUDE_CONFIG_DIR=str(home / ".claude"),
        CODEX_HOME=str(home / ".codex"),
    )
    for name in CA_VARIABLES:  # "{ca_file}" is empty without --tls; an empty path breaks TLS
        if not out.get(name):
            out.pop(name, None)
    node_bin = env.get("CONFORMANCE_NODE_BIN")
    if node_bin:
        out["PATH"] = node_bin + os.pathsep + env.get("PATH", "")
    return out


def new_home(agent: str, cache: Path) -> Path:
    base = cache / "homes" / agent
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="home-", dir=base))


def parse_args(argv: Sequence[str]) -> tuple[str, list[str]]:
    args = list(argv)
    if len(args) < 3 or args[1] != "--" or not args[0]:
        raise LaunchError("usage: python -m conformance.launch AGENT -- COMMAND [ARGS...]")
    return args[0], args[2:]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        agent, command = parse_args(sys.argv[1:] if argv is None else argv)
        cache = os.environ.get("CONFORMANCE_CACHE")
        if not cache:
            raise LaunchError(
                "CONFORMANCE_CACHE is not set; run agents through scripts/conformance"
            )
    except LaunchError as exc:
        print(f"conformance.launch: {exc}", file=sys.stderr)
        return 2
    home = new_home(agent, Path(cache))
    seed_home(agent, home, os.environ)
    env = home_environment(home, os.environ)
    program = shutil.which(command[0], path=env.get("PATH")) or command[0]
    os.execvpe(program, command, env)


if __name__ == "__main__":
    sys.exit(main())
