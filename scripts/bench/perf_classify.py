#!/usr/bin/env python3
"""Groups the samples of `perf script -F tid,ip,sym` (DWARF call graphs) of an Inkless
broker into cost categories and prints their share, with the top leaf functions of each.

    perf script -i perf.data -F tid,ip,sym > stacks.txt
    scripts/bench/perf_classify.py stacks.txt

Each sample goes to the first category (in the order below) whose pattern matches any
frame of its stack, so the order encodes priority: e.g. a memcpy inside
LocalFileSystem::put counts as "object PUT", not as a generic copy.
"""
import collections
import re
import sys

RULES = [
    ("object PUT: local file write (object_store LocalFileSystem::put)",
     r"LocalFileSystem as object_store::ObjectStore>::put|object_store::local::.*put"),
    ("object GET: local file read (block-cache miss)",
     r"LocalFileSystem as object_store::ObjectStore>::get|object_store::local::read_range|object_store::local::.*get"),
    ("SQLite: WAL checkpoint (auto-checkpoint on the commit path)", r"walCheckpoint"),
    ("SQLite: WAL frame write at COMMIT", r"sqlite3WalFrames|sqlite3WalEndWriteTransaction"),
    ("SQLite: SQL parse/prepare (statements not prepare_cached)",
     r"sqlite3Prepare|sqlite3RunParser|sqlite3LockAndPrepare"),
    ("SQLite: commit_appends statements (inserts/upserts/update)", r"commit_appends"),
    ("SQLite: other (read_batches, ...)", r"rusqlite|sqlite3"),
    ("produce validation (split_and_validate, CRC-32C)", r"split_and_validate|crc32c"),
    ("produce handler, other", r"handlers::produce"),
    ("ProduceBuffer (ObjectBuilder push/finish copy)", r"produce_buffer|ObjectBuilder"),
    ("uploader / partition / index-writer actors",
     r"uploader::|partition::PartitionState|partition::PartitionActor|index_writer"),
    ("block cache actor (insert, read_range copy)", r"actors::cache|quick_cache"),
    ("fetch handler (read_partition, copy, set_base_offset)", r"handlers::fetch"),
    ("request decode", r"decode_request|Decodable|FrameDecoder"),
    ("response encode (copies fetched records)", r"encode_response|Encodable"),
    ("socket write", r"tcp_sendmsg|poll_write|tokio::net::tcp::.*write"),
    ("socket read", r"tcp_recvmsg|poll_read|read_buf|tokio::net::tcp::.*read"),
    ("PartitionRegistry lookups", r"PartitionRegistry::get"),
    ("tokio scheduler / timers / wakeups", r"tokio::runtime::(scheduler|park|time|driver|io)|epoll|futex|schedule|park"),
    ("ractor messaging", r"ractor::"),
]


def main(path):
    rules = [(name, re.compile(p)) for name, p in RULES]
    count = collections.Counter()
    leaves = collections.defaultdict(collections.Counter)
    total = 0

    def flush(stack):
        nonlocal total
        if not stack:
            return
        total += 1
        text = "\n".join(stack)
        for name, rx in rules:
            if rx.search(text):
                break
        else:
            name = "other"
        count[name] += 1
        leaves[name][stack[0]] += 1

    stack = []
    with open(path, errors="replace") as f:
        for line in f:
            if not line.startswith(("\t", " ")):
                flush(stack)
                stack = []
                continue
            parts = line.strip().split(" ", 1)
            if len(parts) == 2:
                stack.append(parts[1])
    flush(stack)
    print(f"total samples {total}")
    for name, c in count.most_common():
        top = ", ".join(f"{s[:48]} {100 * v / c:.0f}%" for s, v in leaves[name].most_common(3))
        print(f"{100 * c / max(total, 1):6.1f}%  {name}\n          leaves: {top}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
