"""Processes a case's tools started, found by the mark the harness put in their environment.

An orphan is a process the *case's* tools started that outlives the cancel, not one of the
agent's own workers (language servers, MCP servers, a node helper). The harness writes the
tool commands it asks the model to run, so it prefixes them with `CANCEL_HARNESS_CASE=<tag>`;
every process the command starts, and everything those start, inherits the variable. Reading
`/proc/PID/environ` then names exactly the case's processes, whoever started the agent and
whatever process group or session they moved to.
"""

from __future__ import annotations

import os

MARK_VARIABLE = "CANCEL_HARNESS_CASE"


def marked_command(tag: str, command: str) -> str:
    """`command` as a shell line whose processes carry the case's mark."""
    return f"{MARK_VARIABLE}={tag} {command}"


def marked_processes(tag: str, *, proc: str = "/proc") -> list[int]:
    """Live (non-zombie) pids whose environment carries `CANCEL_HARNESS_CASE=<tag>`."""
    needle = f"{MARK_VARIABLE}={tag}".encode()
    found: list[int] = []
    try:
        entries = os.listdir(proc)
    except OSError:
        return found  # no /proc here: nothing can be observed, so nothing is claimed
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc}/{entry}/environ", "rb") as file:
                environ = file.read()
            with open(f"{proc}/{entry}/stat", "rb") as file:
                stat = file.read()
        except OSError:
            continue  # gone, or not ours to read
        state = stat[stat.rfind(b")") + 2 :][:1]
        if state in (b"Z", b"X"):
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry))
    return sorted(found)
