"""The `python:pkg.module:factory` target: a user's own adapter, written in Python.

The factory is imported and called with no arguments, or with `defects=(...)` when it takes
that keyword; it returns an object implementing `harness.target.Target`. Every mistake (a bad
spec, a module that does not import, a missing attribute, an object lacking Target methods)
is a one-line TargetSpecError saying what is wrong and how to mend it.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any, cast

from harness.target import Capability, Target
from harness.targets.config import TargetSpecError

SPEC_SHAPE = "python:pkg.module:factory"
DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
ASYNC_METHODS = ("start", "new_session", "submit", "cancel", "wait_outcome", "stop")
SYNC_METHODS = ("live_pids", "notes")
# Methods only the scenarios needing a capability call.
BY_CAPABILITY = {Capability.TRANSCRIPT: "transcript", Capability.STREAM_EVENTS: "stream_log"}


def load_factory(ref: str) -> Callable[..., Any]:
    """`pkg.module:factory` (the factory may be dotted: `pkg.mod:Adapter.create`)."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not DOTTED.fullmatch(module_name) or not DOTTED.fullmatch(attr):
        raise TargetSpecError(
            f"bad python target 'python:{ref}'; write {SPEC_SHAPE}, such as "
            "python:my_agent.harness:make_target"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise TargetSpecError(
            f"python target: cannot import module '{module_name}' ({exc}); install it or put "
            "its directory on PYTHONPATH"
        ) from None
    except Exception as exc:
        raise TargetSpecError(
            f"python target: importing '{module_name}' failed: {type(exc).__name__}: {exc}"
        ) from None
    found: Any = module
    for part in attr.split("."):
        if not hasattr(found, part):
            public = sorted(n for n in dir(module) if not n.startswith("_"))
            raise TargetSpecError(
                f"python target: module '{module_name}' has no attribute '{attr}'; "
                f"it has: {', '.join(public[:12]) or 'nothing public'}"
            )
        found = getattr(found, part)
    if not callable(found):
        raise TargetSpecError(
            f"python target: '{module_name}:{attr}' is not callable (it is "
            f"{type(found).__name__}); name a function or class that returns a Target"
        )
    return cast(Callable[..., Any], found)


def make_python_target(ref: str, defects: Sequence[str] = ()) -> Target:
    """Import and call the factory named by `ref` (the spec without `python:`)."""
    factory = load_factory(ref)
    try:
        takes_defects = _takes_defects(factory)
    except (TypeError, ValueError):  # no signature (some builtins): call it plainly
        takes_defects = False
    if defects and not takes_defects:
        raise TargetSpecError(
            f"python target '{ref}': the factory takes no `defects` argument, so the defects "
            f"{', '.join(defects)} cannot be switched on; drop --defect or accept defects=..."
        )
    try:
        made = factory(defects=tuple(defects)) if takes_defects else factory()
    except Exception as exc:
        raise TargetSpecError(
            f"python target '{ref}': the factory raised {type(exc).__name__}: {exc}"
        ) from None
    check_target(made, ref)
    return cast(Target, made)


def _takes_defects(factory: Callable[..., Any]) -> bool:
    params = inspect.signature(factory).parameters.values()
    return any(
        p.kind is inspect.Parameter.VAR_KEYWORD
        or (p.name == "defects" and p.kind is not inspect.Parameter.POSITIONAL_ONLY)
        for p in params
    )


def check_target(obj: object, ref: str) -> None:
    """One line naming what `obj` lacks to be a Target."""
    what = f"python target '{ref}': the factory returned {type(obj).__name__}"
    capabilities = getattr(obj, "capabilities", None)
    if not isinstance(getattr(obj, "name", None), str):
        raise TargetSpecError(f"{what}, which has no `name` string; set name = '...'")
    if not isinstance(capabilities, (set, frozenset)):
        raise TargetSpecError(
            f"{what}, whose `capabilities` is not a set; set "
            "capabilities = frozenset({Capability.CANCEL, ...})"
        )
    known = [c.value for c in Capability]
    unknown = sorted(str(c) for c in capabilities if c not in known)
    if unknown:
        raise TargetSpecError(
            f"{what}, with unknown capabilities {', '.join(unknown)}; known: {', '.join(known)}"
        )
    needed = [*ASYNC_METHODS, *SYNC_METHODS]
    needed += [m for cap, m in BY_CAPABILITY.items() if cap in capabilities]
    missing = [m for m in needed if not callable(getattr(obj, m, None))]
    if missing:
        raise TargetSpecError(
            f"{what}, which lacks {', '.join(missing)}; implement the harness.target.Target "
            "protocol"
        )
    blocking = [m for m in ASYNC_METHODS if not inspect.iscoroutinefunction(getattr(obj, m))]
    if blocking:
        raise TargetSpecError(
            f"{what}, whose {', '.join(blocking)} must be `async def` (see harness.target.Target)"
        )
