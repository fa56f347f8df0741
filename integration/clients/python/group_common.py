"""Shared bits of the Python consumer-group members (../GROUPS.md)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

_lock = threading.Lock()


def now_ms() -> int:
    return int(time.time() * 1000)


def out(line: str) -> None:
    with _lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def parts(ps) -> str:
    s = sorted({int(p) for p in ps})
    return ",".join(map(str, s)) if s else "-"


def seq_of(value: bytes | None) -> str:
    if not value:
        return "-1"
    v = value.decode("utf-8", "replace")
    i = v.find(":")
    return v[i + 1:] if i >= 0 else "-1"


def env(name: str, default: str) -> str:
    v = os.environ.get(name, "")
    return v if v else default


def args() -> tuple[str, str, str, str]:
    if len(sys.argv) != 5:
        sys.stderr.write(f"usage: {sys.argv[0]} BOOTSTRAP TOPIC GROUP NAME\n")
        sys.exit(2)
    return sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]


class Stop:
    """Set by SIGTERM/SIGINT: the member stops consuming, closes and exits 0."""

    def __init__(self) -> None:
        self.flag = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, *_):
        self.flag = True
