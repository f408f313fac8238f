"""Targets through the proxy: `via = "proxy"`, `run --via proxy`, and its mistakes."""

from __future__ import annotations

import io
import os
import signal
import ssl
import subprocess
import sys
from contextlib import redirect_stderr
from pathlib import Path

import httpx
import pytest

from fake_providers.provider import FakeProvider
from harness.cli import main
from harness.proxy.hosts import ProxySetupError
from harness.proxy.service import ProxyService
from harness.proxy.target import ProxiedTarget
from harness.target import AgentBroke, AgentSettings, Endpoint
from harness.targets import TargetSpecError, load_targets
from harness.targets.acp import AcpTarget

NEEDS = "needs an agent the harness starts"
RUN_ONE = ["run", "esc.mid-stream", "--no-calibration", "--json", "/dev/null"]
RUN_ONE += ["--junit", "/dev/null"]
IGNORES_PROXY = [
    *(sys.executable, "-m", "reference_agent", "acp", "--provider", "{provider}"),
    *("--base-url", "http://127.0.0.1:9/v1", "--api-key", "{api_key}", "--max-retries", "0"),
]


def _errors(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue().strip()


def test_toml_via_proxy_wraps_the_target(tmp_path: Path) -> None:
    (tmp_path / "cancel-harness.toml").write_text(
        '[targets.fixed-url]\nkind = "acp"\nvia = "proxy"\n'
        '[targets.bad]\nkind = "acp"\nvia = "sideways"\n'
    )
    with pytest.raises(TargetSpecError, match=r"target 'bad': field 'via' is 'sideways'"):
        load_targets(tmp_path)
    (tmp_path / "cancel-harness.toml").write_text(
        '[targets.inproc]\nkind = "reference"\nvia = "proxy"\n'
    )
    with pytest.raises(TargetSpecError, match="in-process reference agent takes no proxy"):
        load_targets(tmp_path)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--via", "proxy", "--tls"], "--tls with --via proxy"),
        (["--via", "proxy", "--target", "reference"], NEEDS),
        (["--via", "proxy", "--target", "http:http://127.0.0.1:9"], NEEDS),
    ],
)
def test_run_via_proxy_mistakes_are_one_line(argv: list[str], says: str) -> None:
    code, err = _errors(["run", "esc.mid-stream", "--target", "acp", *argv])
    assert code == 2 and says in err and err.count("\n") == 0


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--intercept", "not a host"], "--intercept 'not a host' is not a host name"),
        (["--pass-through", "--upstream", "http://127.0.0.1:9"], "drop one or the other"),
        (["--upstream-ca", "/nonexistent.pem"], "go with --pass-through"),
        (["--pass-through", "--upstream-for", "api.openai.com"], "write HOST=URL"),
        (["--upstream", "https://example.com"], "give a fake provider's origin"),
    ],
)
def test_proxy_command_mistakes_are_one_line(argv: list[str], says: str) -> None:
    code, err = _errors(["proxy", *argv])
    assert code == 2 and says in err and err.count("\n") == 0


def test_catalogue_case_through_the_proxy_with_the_real_base_url() -> None:
    code = main([*RUN_ONE, "--target", "acp", "--via", "proxy", "--provider", "anthropic"])
    assert code == 0


@pytest.mark.anyio
async def test_an_agent_that_ignores_the_proxy_is_named_as_such(provider: FakeProvider) -> None:
    # A hard-coded base URL the proxy never sees (a closed loopback port stands in for it).
    ignores = AcpTarget(
        command=IGNORES_PROXY,
        name="hard-coded",
    )
    target = ProxiedTarget(ignores)
    await target.start(Endpoint("openai-chat", provider.url("openai")), AgentSettings())
    try:
        session = await target.new_session()
        turn = await target.submit(session, "hello")
        ignored = r"no request reached the proxy .* ignores HTTPS_PROXY"
        with pytest.raises(AgentBroke, match=ignored):
            await target.wait_outcome(turn, 10)
    finally:
        await target.stop()
    assert provider.ledger.requests() == []


def test_proxy_command_prints_what_an_agent_needs_and_routes_it() -> None:
    command = [sys.executable, "-m", "harness.cli", "proxy", "--fault", "text=hello via proxy"]
    command += ["--intercept", "api.example-llm.dev"]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    try:
        lines = [proc.stdout.readline() for _ in range(5)]
        env = dict(pair.split("=", 1) for pair in lines[4].split("agent environment ")[1].split())
        context = ssl.create_default_context(cafile=env["SSL_CERT_FILE"])
        with httpx.Client(proxy=env["HTTPS_PROXY"], verify=context, trust_env=False) as http:
            answer = http.post(
                "https://api.example-llm.dev/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert lines[0].startswith("cancel-harness proxy listening on http://127.0.0.1:")
    assert "api.example-llm.dev" in lines[1]
    assert answer.json()["choices"][0]["message"]["content"] == "hello via proxy"
    assert not Path(env["SSL_CERT_FILE"]).exists()  # a fresh CA per run, gone with it


def test_one_proxy_per_process(proxy: ProxyService) -> None:
    with pytest.raises(ProxySetupError, match="a proxy already runs in this process"):
        ProxyService().start()
