"""Acknowledged writes survive a `kill -9` of the broker."""

from __future__ import annotations

import pytest

from conftest import EXTERNAL, ClientRunner, LocalBroker, base_ts, free_port, stop_and_check


@pytest.mark.skipif(
    bool(EXTERNAL),
    reason="INKLESS_TEST_BOOTSTRAP is set: the broker is external, so this test cannot kill -9 and restart it",
)
def test_kill9_restart_keeps_acked_records(tmp_path, topic):
    broker = LocalBroker(tmp_path / "data", free_port(), tmp_path)
    clients_here = ClientRunner(broker.bootstrap, broker, tmp_path)
    broker.start()
    try:
        base = base_ts()
        # acks=all + idempotent: every record below was acknowledged before kill -9.
        clients_here.scenario("confluent-kafka", topic, 3, 3000, mode="produce", base=base, compression="lz4")
        clients_here.scenario("java", topic + "-j", 2, 500, mode="produce", base=base)
        broker.kill9()
        assert broker.proc.returncode == -9

        broker.start()  # same data dir, same port
        clients_here.scenario("confluent-kafka", topic, 3, 3000, mode="consume", base=base)
        clients_here.scenario("java", topic + "-j", 2, 500, mode="consume", base=base)
        # The restarted broker still takes new writes on old and new topics.
        clients_here.scenario("franz-go", topic + "-after", 2, 500)
    finally:
        if broker.alive():
            stop_and_check(broker)
