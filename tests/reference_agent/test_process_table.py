"""The process table: /proc stat lines parsed right, even with awkward command names."""

from __future__ import annotations

import os

from reference_agent.process_table import ProcessStat, live_processes, parse_stat


def test_a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() -> None:
    line = b"4242 (my (odd) ) agent) S 17 4242 4240 0 -1 4194560 120 0 0 0\n"
    assert parse_stat(line) == ProcessStat(pid=4242, state="S", ppid=17, pgid=4242, sid=4240)


def test_zombies_and_dead_entries_are_not_live() -> None:
    assert not parse_stat(b"7 (sleep) Z 1 7 7 0").live
    assert not parse_stat(b"7 (sleep) X 1 7 7 0").live
    assert parse_stat(b"7 (sleep) D 1 7 7 0").live


def test_this_process_is_in_the_table_with_its_group_and_session() -> None:
    me = next(p for p in live_processes() if p.pid == os.getpid())
    assert (me.ppid, me.pgid, me.sid) == (os.getppid(), os.getpgrp(), os.getsid(0))
