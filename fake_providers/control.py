"""The control API under `/__harness/` on the provider's own port, for out-of-process use.

GET ledger, POST/GET/DELETE faults, POST reset, GET gates, POST gates/NAME/release.
Loopback clients only: a provider a user binds to a wider address still cannot be
steered from elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

from fake_providers.faults import FaultSpecError
from fake_providers.faults.hold import MAX_GATE_NAME
from fake_providers.gates import GateRegistry
from fake_providers.ledger import Ledger
from fake_providers.rules import MAX_RULES as MAX_TABLE
from fake_providers.rules import PlanResolver

MAX_RULES = 1_000


def _json(status: int, data: Any) -> tuple[int, bytes]:
    return status, json.dumps(data).encode()


def _error(status: int, message: str) -> tuple[int, bytes]:
    return _json(status, {"error": {"message": message, "type": "harness_control_error"}})


class ControlAPI:
    """The `/__harness/` endpoints. Every input gets a JSON answer; none raises."""

    def __init__(
        self,
        ledger: Ledger,
        resolver: PlanResolver,
        gates: GateRegistry,
        *,
        on_reset: Callable[[], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.resolver = resolver
        self.gates = gates
        self._on_reset = on_reset

    async def handle(
        self, method: str, path: str, query: str, body: bytes, *, loopback: bool
    ) -> tuple[int, bytes]:
        if not loopback:
            return _error(403, "the control API answers loopback clients only")
        params = dict(parse_qsl(query))
        route = path.removeprefix("/__harness/").rstrip("/")
        if route == "ledger" and method == "GET":
            events = params.get("events", "1") not in ("0", "false")
            bodies = params.get("bodies", "0") in ("1", "true")
            return _json(200, self.ledger.to_json(events=events, bodies=bodies))
        if route == "faults":
            if method == "GET":
                return _json(200, {"rules": self._rules()})
            if method == "POST":
                return self._add_faults(body)
            if method == "DELETE":
                count = len(self.resolver.rules())
                self.resolver.clear()
                return _json(200, {"cleared": count})
        if route == "reset" and method == "POST":
            if self._on_reset is not None:
                self._on_reset()
            else:
                self.resolver.clear()
                self.gates.clear()
                self.ledger.reset()
            return _json(200, {"reset": True})
        if route == "gates" and method == "GET":
            return _json(200, {"gates": self.gates.snapshot()})
        if route.startswith("gates/") and route.endswith("/release") and method == "POST":
            name = unquote(route.removeprefix("gates/").removesuffix("/release"))
            if not name or len(name) > MAX_GATE_NAME:
                return _error(400, f"a gate name has 1 to {MAX_GATE_NAME} characters")
            self.gates.get(name).release()
            return _json(200, {"released": name})
        return _error(
            404,
            f"no control endpoint {method} {path}; try GET /__harness/ledger, "
            "POST|GET|DELETE /__harness/faults, POST /__harness/reset, GET /__harness/gates, "
            "POST /__harness/gates/NAME/release",
        )

    def _rules(self) -> list[dict[str, Any]]:
        return [{"id": i, "spec": r.spec(), "used": used} for i, r, used in self.resolver.rules()]

    def _add_faults(self, body: bytes) -> tuple[int, bytes]:
        text = body.decode("utf-8", "replace").strip()
        specs: list[str]
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except ValueError as exc:
                return _error(400, f"faults body is not valid JSON ({exc})")
            except RecursionError:
                return _error(400, "faults body is nested too deeply")
            raw = data.get("rules", [data.get("spec")] if "spec" in data else None)
            if not isinstance(raw, list) or not raw:
                return _error(400, 'send {"spec": "pace=50ms,hang-after=5"} or {"rules": [...]}')
            given = [r.get("spec") if isinstance(r, dict) else r for r in raw]
            specs = [s for s in given if isinstance(s, str)]
            if len(specs) != len(given):
                return _error(
                    400,
                    'each rule must be a spec string or {"spec": "..."}, as in '
                    '{"rules": ["pace=50ms", {"spec": "hang-after=5"}]}',
                )
        elif text:
            specs = [line for line in text.splitlines() if line.strip()]
        else:
            return _error(400, "empty faults body: send a spec such as pace=50ms,hang-after=5")
        if len(specs) > MAX_RULES:
            return _error(400, f"at most {MAX_RULES} rules in one request")
        from fake_providers.faults import parse_rule

        try:
            rules = [parse_rule(s) for s in specs]  # all-or-nothing: validate before adding
        except FaultSpecError as exc:
            return _error(400, str(exc))
        if len(self.resolver.rules()) + len(rules) > MAX_TABLE:
            return _error(400, f"the rule table holds at most {MAX_TABLE:,} rules; DELETE first")
        ids = [self.resolver.add(rule) for rule in rules]
        added = [{"id": i, "spec": r.spec()} for i, r in zip(ids, rules, strict=True)]
        return _json(201, {"rules": added})
