"""The agent settings of each profile: what a schedule's agent is started with."""

from __future__ import annotations

from harness.explore.expect import BACKOFF_BASE, BACKOFF_MAX, max_retries
from harness.explore.schedule import DEADLINE_TEMPO, STALE_TEMPO, Profile
from harness.scenario import Tempo
from harness.target import AgentSettings

COMPACTION_CHARS = 60  # any completed turn takes the history past it
STALE_OTHERWISE = 5.0  # seconds: held streams are released long before an agent gives up


def settings_for(profile: Profile, tempo: Tempo) -> AgentSettings:
    """Retries with a short back-off everywhere; each profile changes one thing."""
    return AgentSettings(
        turn_timeout=tempo(DEADLINE_TEMPO) if profile is Profile.DEADLINE else None,
        stale_timeout=tempo(STALE_TEMPO) if profile is Profile.STALE else STALE_OTHERWISE,
        max_retries=max_retries(profile),
        backoff_base=tempo(BACKOFF_BASE),
        backoff_max=tempo(BACKOFF_MAX),
        compaction_threshold_chars=COMPACTION_CHARS if profile is Profile.COMPACTION else 100_000,
        memory_extraction=profile is Profile.MEMORY,
        stream=profile is not Profile.JSON,
    )
