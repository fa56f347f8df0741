"""A wide franz-go consumer fetches through an incremental fetch session (KIP-227).

The short version of the fetch-session benchmark (fetch_sessions.py): 5,000 partitions, a
few seconds per mode. With sessions the broker answers the consumer's fetches as
incremental ones (its metrics say so); with sessions disabled it answers none that way. The
broker's CPU per fetch of both modes is printed, not asserted (benchmarks print numbers).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import EXTERNAL
from fetch_sessions import measure

PARTITIONS = 5000
SECONDS = 6


@pytest.mark.skipif(bool(EXTERNAL), reason="needs its own broker with an admin endpoint")
def test_a_wide_consumer_fetches_incrementally(tmp_path: Path):
    with_sessions, without = measure(None, PARTITIONS, SECONDS, tmp_path)
    print(f"\n{with_sessions}\n{without}")
    assert with_sessions.fetches > 5, with_sessions.output
    # Full fetches only open and close sessions (franz-go may also start a new one).
    assert with_sessions.incremental >= 0.9 * with_sessions.fetches, "fetches were not incremental"
    assert without.fetches > 5, without.output
    assert without.incremental == 0
