"""A minimal raw Kafka protocol client for the group APIs (test_groups.py).

Only non-flexible request versions, hand-encoded, so that the bytes on the
wire are exactly what the test says: JoinGroup v5, SyncGroup v3, Heartbeat v3,
OffsetCommit v7, OffsetFetch v1, LeaveGroup v3, ApiVersions v0. `request` is
one blocking request at a time (the broker answers a connection's requests in
order, and a JoinGroup may be held until the rebalance completes), so
concurrent members each use their own Conn; `send` and `receive` pipeline.
"""

from __future__ import annotations

import socket
import struct

API_VERSIONS, JOIN_GROUP, SYNC_GROUP, HEARTBEAT, OFFSET_COMMIT, LEAVE_GROUP = 18, 11, 14, 12, 8, 13
PRODUCE = 0
LIST_OFFSETS = 2
FETCH = 1
USED_VERSIONS = {JOIN_GROUP: 5, SYNC_GROUP: 3, HEARTBEAT: 3, OFFSET_COMMIT: 7, LEAVE_GROUP: 3}
OFFSET_FETCH = 9

NONE = 0
ILLEGAL_GENERATION = 22
UNKNOWN_MEMBER_ID = 25
INVALID_SESSION_TIMEOUT = 26
REBALANCE_IN_PROGRESS = 27
MEMBER_ID_REQUIRED = 79
GROUP_MAX_SIZE_REACHED = 81
FENCED_INSTANCE_ID = 82
NOT_LEADER_OR_FOLLOWER = 6
FENCED_LEADER_EPOCH = 74
UNKNOWN_LEADER_EPOCH = 75


# ---- encoding ----

def i16(v: int) -> bytes:
    return struct.pack(">h", v)


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def bytes_(b: bytes | None) -> bytes:
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def array(items: list[bytes]) -> bytes:
    return i32(len(items)) + b"".join(items)


class Reader:
    def __init__(self, b: bytes):
        self.b = b
        self.o = 0

    def _take(self, n: int) -> bytes:
        if self.o + n > len(self.b):
            raise ValueError(f"response truncated: need {n} bytes at {self.o} of {len(self.b)}")
        v = self.b[self.o:self.o + n]
        self.o += n
        return v

    def i16(self) -> int:
        return struct.unpack(">h", self._take(2))[0]

    def i32(self) -> int:
        return struct.unpack(">i", self._take(4))[0]

    def i64(self) -> int:
        return struct.unpack(">q", self._take(8))[0]

    def string(self) -> str | None:
        n = self.i16()
        return None if n < 0 else self._take(n).decode()

    def bytes_(self) -> bytes | None:
        n = self.i32()
        return None if n < 0 else self._take(n)

    def array(self, f):
        n = self.i32()
        return [] if n < 0 else [f(self) for _ in range(n)]


# consumer protocol "range" metadata / assignment (version 0)
def subscription(topics: list[str]) -> bytes:
    return i16(0) + array([string(t) for t in topics]) + bytes_(None)


def assignment(topic_partitions: dict[str, list[int]]) -> bytes:
    return i16(0) + array([string(t) + array([i32(p) for p in ps]) for t, ps in topic_partitions.items()]) + bytes_(None)


class Conn:
    def __init__(self, bootstrap: str, client_id: str = "inkless-groupwire", timeout: float = 60.0):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.client_id = client_id
        self.corr = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf += chunk
        return bytes(buf)

    def request(self, api_key: int, version: int, body: bytes) -> Reader:
        return self.receive(self.send(api_key, version, body))

    def send(self, api_key: int, version: int, body: bytes) -> int:
        """Sends one request without waiting for its answer; returns its correlation id."""
        self.corr += 1
        header = i16(api_key) + i16(version) + i32(self.corr) + string(self.client_id)
        frame = header + body
        self.sock.sendall(i32(len(frame)) + frame)
        return self.corr

    def receive(self, corr: int) -> Reader:
        """Reads the next answer, which must be the one to request `corr`."""
        size = struct.unpack(">i", self._recv_exact(4))[0]
        r = Reader(self._recv_exact(size))
        got = r.i32()
        if got != corr:
            raise ValueError(f"correlation id {got}, expected {corr}")
        return r

    # ---- APIs ----

    def produce(self, topic: str, partition: int, values: list[bytes], timeout_ms: int = 10000) -> tuple[int, int]:
        """One Produce v3 (acks=all) of a plain record batch; returns (error code, base offset)."""
        return self.produce_answer(self.request(PRODUCE, 3, self.produce_body(topic, partition, values, timeout_ms)))

    @staticmethod
    def produce_body(topic: str, partition: int, values: list[bytes], timeout_ms: int = 10000) -> bytes:
        from kafka.record.memory_records import MemoryRecordsBuilder

        b = MemoryRecordsBuilder(magic=2, compression_type=0, batch_size=1 << 20)
        for v in values:
            b.append(timestamp=None, key=None, value=v)
        b.close()
        return (string(None) + i16(-1) + i32(timeout_ms)
                + array([string(topic) + array([i32(partition) + bytes_(b.buffer())])]))

    @staticmethod
    def produce_answer(r: Reader) -> tuple[int, int]:
        topics = r.array(lambda t: (t.string(), t.array(lambda p: (p.i32(), p.i16(), p.i64(), p.i64()))))
        (_, parts), = topics
        (_, err, base, _), = parts
        return err, base

    def latest_offset(self, topic: str, partition: int) -> tuple[int, int]:
        """One ListOffsets v1 for the latest offset; returns (error code, offset)."""
        body = i32(-1) + array([string(topic) + array([i32(partition) + i64(-1)])])
        r = self.request(LIST_OFFSETS, 1, body)
        topics = r.array(lambda t: (t.string(), t.array(lambda p: (p.i32(), p.i16(), p.i64(), p.i64()))))
        (_, parts), = topics
        (_, err, _, offset), = parts
        return err, offset

    def fetch_error(self, topic: str, partition: int, offset: int, current_leader_epoch: int) -> int:
        """One sessionless Fetch v11 of one partition naming the leader epoch the client
        believes current; returns the partition's error code."""
        part = i32(partition) + i32(current_leader_epoch) + i64(offset) + i64(-1) + i32(1 << 20)
        body = (i32(-1) + i32(0) + i32(0) + i32(1 << 20) + b"\x00" + i32(0) + i32(-1)
                + array([string(topic) + array([part])]) + array([]) + string(""))
        r = self.request(FETCH, 11, body)
        r.i32(), r.i16(), r.i32()  # throttle, error, session id

        def partition_answer(p: Reader) -> int:
            _, err = p.i32(), p.i16()
            p.i64(), p.i64(), p.i64()  # high watermark, last stable offset, log start
            p.array(lambda a: (a.i64(), a.i64()))  # aborted transactions
            p.i32(), p.bytes_()  # preferred read replica, records
            return err

        (_, (err,)), = r.array(lambda t: (t.string(), t.array(partition_answer)))
        return err

    def fetch(self, topic: str, partition: int, offset: int, max_wait_ms: int = 0) -> tuple[int, int, bytes]:
        """One sessionless Fetch v11 of one partition (min_bytes 1, 1 MiB); returns (error
        code, high watermark, record batches)."""
        part = i32(partition) + i32(-1) + i64(offset) + i64(-1) + i32(1 << 20)
        body = (i32(-1) + i32(max_wait_ms) + i32(1) + i32(1 << 20) + b"\x00" + i32(0) + i32(-1)
                + array([string(topic) + array([part])]) + array([]) + string(""))
        r = self.request(FETCH, 11, body)
        r.i32(), r.i16(), r.i32()  # throttle, error, session id

        def partition_answer(p: Reader) -> tuple[int, int, bytes]:
            _, err, hwm = p.i32(), p.i16(), p.i64()
            p.i64(), p.i64()  # last stable offset, log start
            p.array(lambda a: (a.i64(), a.i64()))  # aborted transactions
            p.i32()  # preferred read replica
            return err, hwm, p.bytes_() or b""

        (_, (answer,)), = r.array(lambda t: (t.string(), t.array(partition_answer)))
        return answer

    def api_versions(self) -> dict[int, tuple[int, int]]:
        r = self.request(API_VERSIONS, 0, b"")
        err = r.i16()
        if err:
            raise ValueError(f"ApiVersions error {err}")
        return {k: (lo, hi) for k, lo, hi in r.array(lambda x: (x.i16(), x.i16(), x.i16()))}

    def join_group(self, group: str, member_id: str = "", session_timeout_ms: int = 10000,
                   rebalance_timeout_ms: int = 10000, instance_id: str | None = None,
                   topics: tuple[str, ...] = ("t",), protocol: str = "range") -> dict:
        body = self.join_group_body(group, member_id, session_timeout_ms, rebalance_timeout_ms,
                                    instance_id, topics, protocol)
        return self.join_group_answer(self.request(JOIN_GROUP, 5, body))

    @staticmethod
    def join_group_body(group: str, member_id: str = "", session_timeout_ms: int = 10000,
                        rebalance_timeout_ms: int = 10000, instance_id: str | None = None,
                        topics: tuple[str, ...] = ("t",), protocol: str = "range") -> bytes:
        """A JoinGroup v5 body."""
        return (string(group) + i32(session_timeout_ms) + i32(rebalance_timeout_ms) + string(member_id)
                + string(instance_id) + string("consumer")
                + array([string(protocol) + bytes_(subscription(list(topics)))]))

    @staticmethod
    def join_group_answer(r: Reader) -> dict:
        return {
            "throttle_ms": r.i32(),
            "error": r.i16(),
            "generation": r.i32(),
            "protocol": r.string(),
            "leader": r.string(),
            "member_id": r.string(),
            "members": r.array(lambda x: {"member_id": x.string(), "instance_id": x.string(), "metadata": x.bytes_()}),
        }

    def sync_group(self, group: str, generation: int, member_id: str, instance_id: str | None = None,
                   assignments: dict[str, bytes] | None = None) -> dict:
        body = self.sync_group_body(group, generation, member_id, instance_id, assignments)
        return self.sync_group_answer(self.request(SYNC_GROUP, 3, body))

    @staticmethod
    def sync_group_body(group: str, generation: int, member_id: str, instance_id: str | None = None,
                        assignments: dict[str, bytes] | None = None) -> bytes:
        """A SyncGroup v3 body."""
        return (string(group) + i32(generation) + string(member_id) + string(instance_id)
                + array([string(m) + bytes_(a) for m, a in (assignments or {}).items()]))

    @staticmethod
    def sync_group_answer(r: Reader) -> dict:
        return {"throttle_ms": r.i32(), "error": r.i16(), "assignment": r.bytes_()}

    def heartbeat(self, group: str, generation: int, member_id: str, instance_id: str | None = None) -> int:
        r = self.request(HEARTBEAT, 3, string(group) + i32(generation) + string(member_id) + string(instance_id))
        r.i32()
        return r.i16()

    def offset_commit(self, group: str, generation: int, member_id: str, topic: str, offsets: dict[int, int],
                      instance_id: str | None = None) -> dict[int, int]:
        body = self.offset_commit_body(group, generation, member_id, topic, offsets, instance_id)
        return self.offset_commit_answer(self.request(OFFSET_COMMIT, 7, body))

    @staticmethod
    def offset_commit_body(group: str, generation: int, member_id: str, topic: str, offsets: dict[int, int],
                           instance_id: str | None = None) -> bytes:
        parts = [i32(p) + i64(o) + i32(-1) + string(None) for p, o in offsets.items()]
        return (string(group) + i32(generation) + string(member_id) + string(instance_id)
                + array([string(topic) + array(parts)]))

    @staticmethod
    def offset_commit_answer(r: Reader) -> dict[int, int]:
        r.i32()
        out = {}
        for _name, ps in r.array(lambda x: (x.string(), x.array(lambda y: (y.i32(), y.i16())))):
            out.update(dict(ps))
        return out

    def leave_group(self, group: str, members: list[tuple[str, str | None]]) -> dict:
        body = string(group) + array([string(m) + string(i) for m, i in members])
        r = self.request(LEAVE_GROUP, 3, body)
        return {
            "throttle_ms": r.i32(),
            "error": r.i16(),
            "members": r.array(lambda x: {"member_id": x.string(), "instance_id": x.string(), "error": x.i16()}),
        }


def batch_offsets(records: bytes) -> list[tuple[int, int]]:
    """(base offset, last offset) of each whole record batch in a Fetch answer's records."""
    out, at = [], 0
    while at + 27 <= len(records):
        base, length = struct.unpack_from(">qi", records, at)
        if at + 12 + length > len(records):
            break  # a partial batch at the end (Kafka may send one)
        last_delta = struct.unpack_from(">i", records, at + 23)[0]
        out.append((base, base + last_delta))
        at += 12 + length
    return out
