"""The shared client scenario (see ../SCENARIO.md), for the Python clients."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

FILLER = "abcdefghijklmnopqrstuvwxyz0123456789"


class ScenarioError(Exception):
    """A verification failure."""


@dataclass
class Args:
    bootstrap: str
    topic: str
    partitions: int
    count: int
    mode: str = "all"
    create: bool = True
    base_ts: int = 0
    compression: str = "none"
    timeout: float = 120.0

    @property
    def produce(self) -> bool:
        return self.mode in ("all", "produce")

    @property
    def consume(self) -> bool:
        return self.mode in ("all", "consume")


def default_base_ts() -> int:
    return (int(time.time() * 1000) - 600_000) // 1000 * 1000


def parse_args(argv: list[str] | None = None) -> Args:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 4:
        prog = os.path.basename(sys.argv[0])
        sys.exit(f"usage: {prog} BOOTSTRAP TOPIC PARTITIONS COUNT (see SCENARIO.md)")
    mode = os.environ.get("SCENARIO_MODE", "all")
    if mode not in ("all", "produce", "consume"):
        sys.exit(f"bad SCENARIO_MODE {mode!r}")
    base = os.environ.get("SCENARIO_BASE_TS")
    args = Args(
        bootstrap=argv[0],
        topic=argv[1],
        partitions=int(argv[2]),
        count=int(argv[3]),
        mode=mode,
        create=os.environ.get("SCENARIO_CREATE", "1") != "0",
        base_ts=int(base) if base else default_base_ts(),
        compression=os.environ.get("SCENARIO_COMPRESSION", "none"),
        timeout=float(os.environ.get("SCENARIO_TIMEOUT", "120")),
    )
    if args.partitions < 1 or args.count < 0:
        sys.exit("PARTITIONS must be >= 1 and COUNT >= 0")
    return args


@dataclass(frozen=True)
class Record:
    index: int
    partition: int
    key: bytes
    value: bytes | None
    timestamp: int
    headers: list = field(default_factory=list)  # list[tuple[str, bytes]]


def value_of(i: int) -> bytes | None:
    if i % 50 == 49:
        return None
    n = (i * 37) % 300
    filler = (FILLER * (n // len(FILLER) + 1))[:n]
    return f"value-{i:06d}-{filler}".encode()


def headers_of(i: int) -> list[tuple[str, bytes]]:
    h = [("idx", str(i).encode()), ("src", b"inkless-test"), ("dup", b"1"), ("dup", b"2")]
    if i % 3 == 0:
        h.append(("empty", b""))
    return h


def record(args: Args, i: int) -> Record:
    return Record(
        index=i,
        partition=i % args.partitions,
        key=f"key-{i:06d}".encode(),
        value=value_of(i),
        timestamp=args.base_ts + i,
        headers=headers_of(i),
    )


def records(args: Args) -> list[Record]:
    return [record(args, i) for i in range(args.count)]


def expected_per_partition(args: Args) -> dict[int, int]:
    counts = {p: 0 for p in range(args.partitions)}
    for i in range(args.count):
        counts[i % args.partitions] += 1
    return counts


def _norm_headers(headers) -> list[tuple[str, bytes | None]]:
    out = []
    for k, v in headers or []:
        if isinstance(k, bytes):
            k = k.decode()
        if isinstance(v, str):
            v = v.encode()
        out.append((k, v))
    return out


class Verifier:
    """Checks consumed records of one partition against the scenario."""

    def __init__(self, args: Args, client: str):
        self.args = args
        self.client = client
        self.next_pos = {p: 0 for p in range(args.partitions)}
        self.total = 0

    def fail(self, msg: str) -> None:
        raise ScenarioError(f"{self.client}: topic {self.args.topic}: {msg}")

    def check(self, partition: int, offset: int, key, value, timestamp: int, headers) -> None:
        a = self.args
        if partition not in self.next_pos:
            self.fail(f"record from unexpected partition {partition}")
        j = self.next_pos[partition]
        if offset != j:
            self.fail(f"partition {partition}: expected offset {j}, got {offset} (gap, duplicate or reordering)")
        i = partition + j * a.partitions
        if i >= a.count:
            self.fail(f"partition {partition}: extra record at offset {offset} (only {a.count} records produced)")
        exp = record(a, i)
        if key is not None and isinstance(key, str):
            key = key.encode()
        if value is not None and isinstance(value, str):
            value = value.encode()
        if key != exp.key:
            self.fail(f"partition {partition} offset {offset}: key {key!r}, expected {exp.key!r}")
        if value != exp.value:
            self.fail(f"partition {partition} offset {offset} (record {i}): value {value!r:.80}, expected {exp.value!r:.80}")
        if timestamp != exp.timestamp:
            self.fail(f"partition {partition} offset {offset} (record {i}): timestamp {timestamp}, expected {exp.timestamp}")
        got_h = _norm_headers(headers)
        if got_h != exp.headers:
            self.fail(f"partition {partition} offset {offset} (record {i}): headers {got_h}, expected {exp.headers}")
        self.next_pos[partition] = j + 1
        self.total += 1

    def done(self) -> bool:
        exp = expected_per_partition(self.args)
        return all(self.next_pos[p] >= exp[p] for p in exp)

    def check_end_offsets(self, end_offsets: dict[int, int]) -> None:
        exp = expected_per_partition(self.args)
        for p, n in exp.items():
            if end_offsets.get(p) != n:
                self.fail(f"partition {p}: end offset {end_offsets.get(p)}, expected {n}")

    def finish(self) -> None:
        exp = expected_per_partition(self.args)
        for p, n in exp.items():
            if self.next_pos[p] != n:
                self.fail(f"partition {p}: consumed {self.next_pos[p]} records, expected {n}")
        if self.total != self.args.count:
            self.fail(f"consumed {self.total} records, expected {self.args.count}")


def main_wrapper(client: str, run) -> None:
    """Runs run(args), prints the OK line, maps failures to exit status 1."""
    args = parse_args()
    start = time.monotonic()
    try:
        run(args)
    except ScenarioError as e:
        print(f"FAIL {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - any client error is a test failure
        import traceback

        traceback.print_exc()
        print(f"FAIL {client}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"OK {client} {args.mode} {args.count} records in {time.monotonic() - start:.1f}s")
