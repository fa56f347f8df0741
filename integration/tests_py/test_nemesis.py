"""The nemesis test (integration/nemesis/nemesis.py), short and with a fixed seed: a
six-node cluster under a producer/consumer workload while every fault kind strikes once
(kill -9 of a node and of an AZ, SIGSTOP, S3 and PostgreSQL cut and black-holed, PostgreSQL
restarted), then the checker: no acknowledged record lost, moved or (even for a while) not
served, no duplicate, send order kept, no fatal producer error, no offset reset, committed
offsets never going backwards.
The summary line is printed as a measurement. Longer and many-seed runs: scripts/nemesis.sh.

A second run divides the nodes' long timers by 20,000 (--time-scale): retention retires records
while the faults strike, and the checker accepts as retired only records below the log start
offset that were older than retention.ms. The other tests check the checker itself on synthetic
histories (it must be able to fail) and the proxy's cut and black-hole modes.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from pathlib import Path

import pytest

from conftest import EXTERNAL, measurement
from s3server import CuttableProxy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nemesis"))
import nemesis as nm  # noqa: E402

SEED = 20240607
# Every kind once (--cover), a fault every 8-9 s: about 70 s of faults.
SHORT_RUN = nm.Options(seed=SEED, duration=66, cover=True, interval=(8.0, 9.0), ip_base=70)


@pytest.mark.skipif(bool(EXTERNAL), reason="starts its own cluster")
def test_no_client_visible_violation_under_every_fault_kind():
    summary = nm.run(SHORT_RUN)
    measurement(f"NEMESIS seed {SEED}: {json.dumps(summary)}")
    assert set(summary["faults"]) == set(nm.FAULT_KINDS), f"not every fault kind ran: {summary['faults']}"
    assert "harness_errors" not in summary, summary["harness_errors"]
    assert summary["acked"] > 10_000, f"too few records acknowledged: {summary}"
    assert summary["violations"] == 0, \
        f"violations found; logs, details.json and metadata.txt in {summary.get('kept')}: {summary}"


# The same with every long timer 20,000 times faster (500 simulated hours): retention (30 s, its
# floor) retires most records while faults strike, objects are merged and deleted, producer ids expire.
TIME_SCALED_RUN = nm.Options(seed=SEED + 1, duration=66, cover=True, interval=(8.0, 9.0), ip_base=80,
                             time_scale=20_000)


@pytest.mark.skipif(bool(EXTERNAL), reason="starts its own cluster")
def test_retention_under_faults_with_time_compressed_timers_retires_only_old_records():
    summary = nm.run(TIME_SCALED_RUN)
    measurement(f"NEMESIS time-scaled seed {SEED + 1}: {json.dumps({k: v for k, v in summary.items() if k != 'samples'})}")
    assert "harness_errors" not in summary, summary["harness_errors"]
    assert summary["simulated_hours"] >= 300, summary
    assert summary["retired"] > 10_000, f"retention retired too little: {summary}"
    assert min(summary["log_start_offsets"].values()) > 0, "every partition retired records"
    assert summary["violations"] == 0, \
        f"violations found; logs, details.json and metadata.txt in {summary.get('kept')}: {summary}"


# ---------------------------------------------------------------- the checker on synthetic histories

def v(name: str, seq: int) -> bytes:
    return nm.value_of(name, seq)


def clean_history():
    """idem-0..3 on partition 0 at offsets 0..3, plain-0..1 on partition 1 at 0..1."""
    acked = {"idem": {i: (0, i, float(i)) for i in range(4)}, "plain": {0: (1, 0, 0.5), 1: (1, 1, 1.5)}}
    served = {0: {i: v("idem", i) for i in range(4)}, 1: {0: v("plain", 0), 1: v("plain", 1)}}
    return acked, served, {"idem": 4, "plain": 2}


def counts(found: dict) -> dict:
    return {k: len(x) for k, x in found.items() if x}


def test_checker_passes_a_clean_history():
    acked, served, sent = clean_history()
    assert counts(nm.check_records(acked, served, sent)) == {}
    # An unacknowledged record that was written anyway is fine.
    served[0][4] = v("idem", 5)
    assert counts(nm.check_records(acked, served, {"idem": 6, "plain": 2})) == {}


def test_checker_finds_a_lost_record():
    acked, served, sent = clean_history()
    del served[0][3]
    found = nm.check_records(acked, served, sent)
    assert counts(found) == {"lost": 1}
    assert found["lost"][0]["value"] == "idem-3" and found["lost"][0]["offset"] == 3


def test_checker_finds_a_record_at_another_offset():
    acked, served, sent = clean_history()
    served[0] = {0: v("idem", 0), 1: v("idem", 1), 2: v("idem", 2), 7: v("idem", 3)}
    assert counts(nm.check_records(acked, served, sent)) == {"wrong_offset": 1}


def test_checker_finds_duplicates_and_unknown_values():
    acked, served, sent = clean_history()
    served[0][4] = v("idem", 1)
    served[1][2] = v("plain", 9)      # never sent
    served[1][3] = b"garbage"
    found = nm.check_records(acked, served, sent)
    assert counts(found) == {"duplicates": 1, "unknown_values": 2}


def test_checker_finds_records_out_of_send_order():
    acked, served, sent = clean_history()
    served[0][1], served[0][2] = served[0][2], served[0][1]
    acked["idem"][1], acked["idem"][2] = (0, 2, 1.0), (0, 1, 2.0)
    found = nm.check_records(acked, served, sent)
    assert counts(found) == {"order_violations": 1}
    assert found["order_violations"][0]["later"][0] == "idem-2"
    # The non-idempotent producer's order is not guaranteed: reported apart.
    served[1][0], served[1][1] = served[1][1], served[1][0]
    acked["plain"] = {0: (1, 1, 0.5), 1: (1, 0, 1.5)}
    assert counts(nm.check_records(acked, served, sent)) == {"order_violations": 1, "plain_reorders": 1}


def test_checker_finds_a_read_the_log_no_longer_serves():
    _, served, _ = clean_history()
    consumed = {(0, 1, v("idem", 1)), (0, 3, v("idem", 3))}
    assert nm.check_reads(consumed, served) == []
    del served[0][3]
    assert [(r["partition"], r["offset"]) for r in nm.check_reads(consumed, served)] == [(0, 3)]


def test_records_below_the_log_start_are_retired_and_only_once_old_enough():
    acked, served, sent = clean_history()
    del served[0][0], served[0][1]
    consumed = {(0, 0, v("idem", 0))}
    # Below the log start offset 2: retired, not lost, and a read of them is not inconsistent.
    found = nm.check_records(acked, served, sent, low={0: 2, 1: 0})
    assert counts(found) == {"retired": 2}
    assert nm.check_reads(consumed, served, {0: 2}) == []
    # Without retention the same history loses them.
    assert counts(nm.check_records(acked, served, sent)) == {"lost": 2}
    # Retired within retention.ms of their timestamp: too early.
    stamps = {"idem": {0: 1_000, 1: 5_000}}
    retention_ms, read_by = 10_000, 14_000
    early = nm.retired_early(found["retired"], stamps, read_by, retention_ms)
    assert [r["seq"] for r in early] == [1]
    assert nm.retired_early(found["retired"], stamps, 16_000, retention_ms) == []


def test_scaled_timers_come_from_the_defaults_down_to_their_floors():
    env = nm.scaled_timers(1000)
    assert set(env) == {"INKLESS__" + k.upper().replace(".", "__") for k in nm.TIMER_FLOORS}
    assert env["INKLESS__PRODUCE__PRODUCER_ID_EXPIRATION_MS"] == str(86_400_000 // 1000)
    assert env["INKLESS__STORAGE__ORPHAN_MIN_AGE_MS"] == "60000", "a floor"
    assert nm.scaled_retention_ms(1000) == 604_800
    assert nm.scaled_retention_ms(1e6) == nm.RETENTION_FLOOR_MS


def test_committed_offsets_going_backwards():
    # (invoked, completed, partition, offset)
    commits = [(0.9, 1.0, 0, 10), (1.9, 2.0, 0, 20), (0.9, 1.0, 1, 5)]
    reads = [(2.5, 2.6, 0, 20), (0.5, 0.6, 1, 0)]
    assert nm.commit_regressions(commits, reads) == []
    # A read invoked after the commit of 20 completed, answering 15.
    regressed = nm.commit_regressions(commits, reads + [(3.0, 3.1, 0, 15)])
    assert [(r["partition"], r["kind"], r["offset"], r["before"]) for r in regressed] == [(0, "read", 15, 20)]
    # A read overlapping the commit of 20 may see either value.
    assert nm.commit_regressions(commits, [(1.5, 2.1, 0, 10)]) == []
    # A successful commit below an earlier one ...
    regressed = nm.commit_regressions(commits + [(3.9, 4.0, 0, 12)], reads)
    assert [(r["kind"], r["offset"]) for r in regressed] == [("commit", 12)]
    # ... unless the two overlapped (a late answer to a commit applied earlier).
    assert nm.commit_regressions(commits + [(1.5, 4.0, 0, 12)], []) == []
    assert nm.committed_above_hw({0: 20, 1: 9}, {0: 20, 1: 5}) == \
        [{"partition": 1, "committed": 9, "high_watermark": 5}]


def test_end_offsets_below_acknowledged_records():
    acked = {"idem": {0: (0, 0, 1.0), 1: (0, 1, 2.0)}}  # partition 0, offsets 0 and 1
    reads = [(0.5, 0.6, 0, 0), (1.5, 1.6, 0, 1), (1.9, 2.2, 0, 1), (2.5, 2.6, 0, 2)]
    assert nm.end_offset_regressions(acked, reads) == []
    # Invoked after offset 1 was acknowledged, answering 1: that record is not served.
    regressed = nm.end_offset_regressions(acked, reads + [(3.0, 3.1, 0, 1)])
    assert [(r["partition"], r["offset"], r["before"]) for r in regressed] == [(0, 1, 2)]


def test_unavailability_is_the_worst_partition_gap_within_the_fault_window():
    acked = {"idem": {0: (0, 0, 9.0), 1: (0, 1, 18.0), 2: (1, 0, 10.5), 3: (1, 1, 30.0)}}
    faults = [nm.Fault("kill", "node-1", 10.0, 15.0), nm.Fault("pause", "node-2", 20.0, 28.0)]
    got = nm.unavailability(faults, acked, horizon=40.0, partitions=2)
    # kill: window 10..20 (the next fault starts); partition 1 has no ack from 10.5 to 20.
    # pause: window 20..40 (the end of the workload); partition 0 acked nothing in it.
    assert got == {"kill": {"max": 9.5, "mean": 9.5, "n": 1}, "pause": {"max": 20.0, "mean": 20.0, "n": 1}}


def test_seeded_schedule_covers_every_kind_first_and_repeats():
    def schedule(seed: int) -> list[str]:
        kinds = nm.Nemesis(None, nm.Options(seed=seed, cover=True), None).kinds()
        return [next(kinds) for _ in range(20)]

    assert sorted(schedule(3)[:len(nm.FAULT_KINDS)]) == sorted(nm.FAULT_KINDS)
    assert schedule(3) == schedule(3) != schedule(4)


# ---------------------------------------------------------------- the proxy's faults

def echo_server() -> socket.socket:
    srv = socket.create_server(("127.0.0.1", 0))

    def echo(c: socket.socket) -> None:
        try:
            while data := c.recv(1024):
                c.sendall(data)
        except OSError:
            pass
        c.close()

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(c,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return srv


def recv_within(s: socket.socket, seconds: float) -> bytes | None:
    s.settimeout(seconds)
    try:
        return s.recv(1024)
    except TimeoutError:
        return None


def test_proxy_black_hole_holds_bytes_and_cut_drops_connections():
    srv = echo_server()
    proxy = CuttableProxy(srv.getsockname()[1])
    try:
        a = socket.create_connection(("127.0.0.1", proxy.port))
        a.sendall(b"one")
        assert recv_within(a, 5) == b"one"
        proxy.blackhole()
        a.sendall(b"two")
        b = socket.create_connection(("127.0.0.1", proxy.port))  # accepted while black-holed
        b.sendall(b"three")
        assert recv_within(a, 0.5) is None and recv_within(b, 0.5) is None
        proxy.restore()
        assert recv_within(a, 5) == b"two" and recv_within(b, 5) == b"three"
        proxy.cut()
        assert recv_within(a, 5) == b""  # closed
        c = socket.create_connection(("127.0.0.1", proxy.port))
        assert recv_within(c, 5) == b""  # refused (accepted, then closed at once)
        proxy.restore()
        d = socket.create_connection(("127.0.0.1", proxy.port))
        d.sendall(b"four")
        assert recv_within(d, 5) == b"four"
    finally:
        proxy.close()
        srv.close()


def test_proxy_closes_the_target_side_when_the_client_leaves():
    """Else a metadata-store connection outlives its client and keeps its locks."""
    srv = socket.create_server(("127.0.0.1", 0))
    proxy = CuttableProxy(srv.getsockname()[1])
    try:
        for leave in ("close", "cut"):
            a = socket.create_connection(("127.0.0.1", proxy.port))
            a.sendall(b"x")
            srv.settimeout(5)
            t, _ = srv.accept()
            assert recv_within(t, 5) == b"x"
            if leave == "close":
                a.close()
            else:
                proxy.cut()
                proxy.restore()
            assert recv_within(t, 5) == b"", f"target connection still open after the client's {leave}"
            t.close()
    finally:
        proxy.close()
        srv.close()
