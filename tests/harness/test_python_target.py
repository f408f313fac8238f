"""`python:pkg.module:factory` targets: a user's adapter module, and one-line errors."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import pytest

from fake_providers.provider import FakeProvider
from harness.target import AgentSettings, Capability, Endpoint
from harness.targets import TargetSpecError, make_target
from harness.targets.reference import ReferenceTarget

_names = itertools.count()

ADAPTER = """
from harness.targets.reference import ReferenceTarget

def make(defects=()):
    return ReferenceTarget(defects=defects)

def plain():
    target = ReferenceTarget()
    target.name = "plain"
    return target

class Adapter:
    @staticmethod
    def create():
        return ReferenceTarget()

def anthropic_only():
    target = ReferenceTarget()
    target.providers, target.close_within = ("anthropic",), 0.3
    return target

NOT_CALLABLE = 42

def broken():
    raise RuntimeError("no config file")

class Half:
    name = "half"
    capabilities = frozenset({"cancel"})
    async def start(self, endpoint, settings): ...

class Blocking:
    name = "blocking"
    capabilities = frozenset({"cancel"})
    def start(self, endpoint, settings): ...
    def new_session(self): ...
    async def submit(self, session_id, prompt): ...
    async def cancel(self, session_id, stream_id=None): ...
    async def wait_outcome(self, submission, timeout): ...
    async def stop(self): ...
    def live_pids(self): return []
    def notes(self): return []

class Odd(Blocking):
    capabilities = frozenset({"cancel", "telepathy"})
    async def start(self, endpoint, settings): ...
    async def new_session(self): ...
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh adapter module (a new name each test) importable from a tmp dir."""
    name = f"user_adapter_{next(_names)}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(ADAPTER))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def error_of(spec: str, defects: tuple[str, ...] = ()) -> str:
    with pytest.raises(TargetSpecError) as caught:
        make_target(spec, defects)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.anyio
async def test_a_factory_in_a_user_module_makes_a_working_target(
    module: str, provider: FakeProvider
) -> None:
    target = make_target(f"python:{module}:make", ("provider-ignores-cancel",))
    assert isinstance(target, ReferenceTarget)
    assert target.defects.names() == ["provider-ignores-cancel"]
    clean = make_target(f"python:{module}:make")
    await clean.start(Endpoint("openai-chat", provider.url("openai")), AgentSettings())
    try:
        turn = await clean.submit(await clean.new_session(), "hello")
        assert (await clean.wait_outcome(turn, 10)).stop_reason == "completed"
    finally:
        await clean.stop()


def test_factories_without_arguments_and_dotted_ones(module: str) -> None:
    assert make_target(f"python:{module}:plain").name == "plain"
    assert Capability.CANCEL in make_target(f"python:{module}:Adapter.create").capabilities


def test_an_adapter_may_declare_its_providers_and_close_bound(module: str) -> None:
    """Optional: the factory's own `providers` / `close_within` are kept; none is required."""
    declared = make_target(f"python:{module}:anthropic_only")
    assert (getattr(declared, "providers", None), getattr(declared, "close_within", None)) == (
        ("anthropic",),
        0.3,
    )


@pytest.mark.parametrize(
    ("suffix", "expected"),
    [
        ("", "target 'python:' names no MODULE:FACTORY; write python:MODULE:FACTORY"),
        ("{m}", "bad python target 'python:{m}'; write python:pkg.module:factory"),
        ("{m}:", "bad python target 'python:{m}:'; write python:pkg.module:factory"),
        ("no_such_module_xyz:make", "cannot import module 'no_such_module_xyz'"),
        ("{m}:nope", "module '{m}' has no attribute 'nope'; it has: Adapter, Blocking"),
        ("{m}:NOT_CALLABLE", "'{m}:NOT_CALLABLE' is not callable (it is int)"),
        ("{m}:broken", "the factory raised RuntimeError: no config file"),
        ("{m}:Half", "the factory returned Half, which lacks new_session, submit, cancel"),
        ("{m}:Blocking", "whose start, new_session must be `async def`"),
        ("{m}:Odd", "with unknown capabilities telepathy; known: cancel, timeout"),
    ],
)
def test_bad_python_targets_are_one_line(module: str, suffix: str, expected: str) -> None:
    assert expected.format(m=module) in error_of("python:" + suffix.format(m=module))


def test_defects_need_a_factory_that_takes_them(module: str) -> None:
    message = error_of(f"python:{module}:plain", ("provider-ignores-cancel",))
    assert "takes no `defects` argument" in message and "provider-ignores-cancel" in message


def test_a_module_that_fails_to_import_says_why(tmp_path: Path, module: str) -> None:
    (tmp_path / f"{module}_bad.py").write_text("import json\nraise ValueError('oops')\n")
    message = error_of(f"python:{module}_bad:make")
    assert f"importing '{module}_bad' failed: ValueError: oops" in message
