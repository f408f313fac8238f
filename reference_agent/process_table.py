"""The Linux process table, read from /proc: who runs, in which group and session.

Used wherever the truth about processes matters more than a handle on them: the tools'
"no process outlives its call" check, the acp target's orphan check on an agent we did
not write, and the tests. Zombies (`Z`) and dead entries (`X`) are not live: a killed
tool whose orphans init has not reaped yet is gone for every purpose here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PROC = "/proc"


@dataclass(frozen=True, slots=True)
class ProcessStat:
    """The fields of one `/proc/PID/stat` line we use."""

    pid: int
    state: str  # R, S, D, Z, X, ...
    ppid: int
    pgid: int  # process group
    sid: int  # session

    @property
    def live(self) -> bool:
        return self.state not in ("Z", "X")


def parse_stat(line: bytes) -> ProcessStat:
    """`pid (comm) state ppid pgrp session ...`; comm may hold spaces and parentheses,
    so the fields are counted from the last `)`."""
    head, _, tail = line.rpartition(b")")
    pid = int(head.split(b"(", 1)[0])
    fields = tail.split()
    return ProcessStat(pid, fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[3]))


def available() -> bool:
    """Whether this system has a /proc we can read (Linux)."""
    return os.path.exists(f"{PROC}/self/stat")


def live_processes() -> list[ProcessStat]:
    """Every live process now; empty without /proc."""
    try:
        entries = os.listdir(PROC)
    except OSError:
        return []
    found: list[ProcessStat] = []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"{PROC}/{entry}/stat", "rb") as file:
                stat = parse_stat(file.read())
        except (OSError, ValueError, IndexError):
            continue  # not a process, or it exited while we looked
        if stat.live:
            found.append(stat)
    return found
