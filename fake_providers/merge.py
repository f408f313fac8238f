"""One control-API answer from the answers of every worker (`fake_providers.workers`).

Pure functions over the JSON the workers' own control APIs gave. The ledger is the one that
needs care: connections are put in the order they were accepted, and requests are grouped
into logical calls again over all workers (a retry may reach another worker than its first
attempt), by the same rule as `Ledger` uses for one process.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

RETRY_HEADER = "x-stainless-retry-count"


def merge_answers(
    method: str, path: str, answers: Sequence[tuple[int, bytes]]
) -> tuple[int, bytes]:
    """The answer a single provider would have given, from each worker's (status, body)."""
    route = path.removeprefix("/__harness/").rstrip("/")
    failed = next((a for a in answers if not 200 <= a[0] < 300), None)
    if failed is not None:  # every worker validates alike: the first refusal says why
        return failed
    if method == "GET" and route == "ledger":
        parts = [json.loads(body) for _, body in answers]
        return answers[0][0], json.dumps(merge_ledgers(parts)).encode()
    if method == "GET" and route == "gates":
        gates = [json.loads(body)["gates"] for _, body in answers]
        return answers[0][0], json.dumps({"gates": merge_gates(gates)}).encode()
    # Rule tables, rule ids and use counts are the same everywhere; so is a mutation's answer.
    return answers[0]


def merge_gates(tables: Sequence[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for table in tables:
        for name, gate in table.items():
            seen = merged.setdefault(name, {"arrivals": 0, "released": False})
            seen["arrivals"] += gate["arrivals"]
            seen["released"] = seen["released"] or gate["released"]
    return merged


def merge_ledgers(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One ledger JSON from each worker's `Ledger.to_json()`; each connection says which
    worker (0 to N-1) served it."""
    for index, part in enumerate(parts):
        for conn in part["connections"]:
            conn["worker"] = index
    connections = sorted(
        (c for part in parts for c in part["connections"]), key=lambda c: (c["opened_ns"], c["id"])
    )
    requests = sorted((r for c in connections for r in c["requests"]), key=lambda r: r["ordinal"])
    return {
        "clock": parts[0]["clock"],
        "now_ns": max(part["now_ns"] for part in parts),
        "workers": len(parts),
        "connections": connections,
        "calls": regroup_calls(requests),
        "totals": _sum(part["totals"] for part in parts),
        "summarised": _sum(part["summarised"] for part in parts),
    }


def regroup_calls(requests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group requests (oldest ordinal first) into logical calls; rewrites each request's
    `call_id` and `attempt`. The rule of `Ledger._group`: the official SDKs number their
    retries in x-stainless-retry-count, so retry N joins the oldest call with the same path
    and body that has exactly N attempts so far; other clients resend the same body, so an
    identical body on the same path is a retry of the latest such call."""
    by_body: dict[tuple[str, str], list[int]] = {}
    attempts: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    next_call = 1
    for req in requests:
        calls = by_body.setdefault((req["path"], req["body_digest"]), [])
        raw = req["headers"].get(RETRY_HEADER)
        valid = isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) < 10
        count = int(raw) if valid else None
        chosen: tuple[int, int] | None = None
        if count is not None and count > 0:
            for call_id in calls:
                if attempts[call_id] == count:
                    attempts[call_id] += 1
                    chosen = (call_id, count)
                    break
        elif count is None and calls:
            call_id = calls[-1]
            attempts[call_id] += 1
            chosen = (call_id, attempts[call_id] - 1)
        if chosen is None:
            call_id, next_call = next_call, next_call + 1
            calls.append(call_id)
            attempts[call_id] = 1
            chosen = (call_id, 0)
        req["call_id"], req["attempt"] = chosen
        members.setdefault(chosen[0], []).append(req["ordinal"])
    return [
        {"id": call_id, "attempts": ordinals, "retries": len(ordinals) - 1}
        for call_id, ordinals in members.items()
    ]


def _sum(tables: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for table in tables:
        for key, value in table.items():
            total[key] = total.get(key, 0) + value
    return total
