"""`--shard I/N`: split the cases of a run across N machines, the way CI matrices do.

A case belongs to shard `1 + hash(name) mod N` (sha256 of `scenario[kind]`), so the split
depends on the case's name alone: neither its position in the catalogue nor which other
cases were selected moves it. Every case is in exactly one shard; N runs with the same
`--seed`, merged (`cancel-harness report merge`), give each case the seed, and so the
verdict, it gets in a single run. The shards are not equal in size (a hash is not a
partition by count); with few cases some may be empty, which is not an error.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from harness.cases import Case, ConfigError

SHARDS_MAX = 1000
_FORM = re.compile(r"^(\d{1,6})/(\d{1,6})$")


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `index` (1-based) of `count`."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, case_name: str) -> bool:
        return shard_of(case_name, self.count) == self.index

    def select(self, cases: Sequence[Case]) -> list[Case]:
        """The cases of this shard, in their original order."""
        return [c for c in cases if self.holds(c.name)]


def shard_of(case_name: str, count: int) -> int:
    """The 1-based shard a case belongs to among `count`."""
    digest = hashlib.sha256(case_name.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def parse_shard(text: str, flag: str = "--shard") -> Shard:
    """`I/N` with 1 <= I <= N <= SHARDS_MAX, or ConfigError naming the form."""
    match = _FORM.match(text.strip())
    if match is None:
        raise ConfigError(
            f"{flag} {text}: expected I/N, this machine's shard I of N, such as 1/4 "
            "(in a GitHub Actions matrix: ${{ matrix.shard }}/4)"
        )
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= count <= SHARDS_MAX:
        raise ConfigError(f"{flag} {text}: N is the number of shards, 1 to {SHARDS_MAX}")
    if not 1 <= index <= count:
        raise ConfigError(f"{flag} {text}: I counts from 1 to N ({count}), such as 1/{count}")
    return Shard(index, count)
