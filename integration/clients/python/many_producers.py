"""Many idempotent librdkafka producers writing to one partition at once, for
integration/tests_py/test_many_producers.py:

    many_producers.py BOOTSTRAP TOPIC PARTITION PRODUCERS RECORDS PREFIX

PRODUCERS confluent_kafka Producers (idempotent, acks=all, linger 5 ms), each in its own
thread, each send RECORDS records "PREFIX-<producer>:<seq>" to PARTITION. One line per
producer: PRODUCER PREFIX-i acked N errors E first-error "..." (an acknowledgement whose
offset is not above the producer's previous one counts as an error); exit 1 on any error.
"""

from __future__ import annotations

import sys
import threading

from confluent_kafka import Producer


def produce_one(bootstrap: str, topic: str, partition: int, records: int, name: str, out: dict) -> None:
    state = {"acked": 0, "errors": 0, "first": "", "last": -1}

    def fail(msg: str) -> None:
        state["errors"] += 1
        state["first"] = state["first"] or msg

    def on_delivery(err, msg) -> None:
        if err is not None:
            fail(str(err))
        elif msg.offset() <= state["last"]:
            fail(f"offset {msg.offset()} after {state['last']}")
        else:
            state["last"] = msg.offset()
            state["acked"] += 1

    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "message.timeout.ms": 120_000})
    for seq in range(records):
        while True:
            try:
                p.produce(topic, value=f"{name}:{seq}".encode(), partition=partition, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(180)
    if left:
        fail(f"{left} records not delivered at the end")
    out[name] = state


def main() -> int:
    if len(sys.argv) != 7:
        print(__doc__, file=sys.stderr)
        return 2
    bootstrap, topic, partition, producers, records, prefix = sys.argv[1:]
    out: dict[str, dict] = {}
    names = [f"{prefix}-{i}" for i in range(int(producers))]
    threads = [threading.Thread(target=produce_one, args=(bootstrap, topic, int(partition), int(records), n, out))
               for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failed = 0
    for n in names:
        s = out.get(n, {"acked": 0, "errors": 1, "first": "producer thread died"})
        first = s["first"].replace('"', "'")
        print(f'PRODUCER {n} acked {s["acked"]} errors {s["errors"]} first-error "{first}"')
        failed += s["errors"] > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
