"""Shared by the data-lifecycle tests: a broker on an S3 server (moto) with fast lifecycle
settings, its admin metrics, and waiting for a condition."""

from __future__ import annotations

import contextlib
import re
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import LocalBroker, free_port, stop_and_check
from s3server import MotoServer, s3_env


@contextlib.contextmanager
def s3_broker(tmp: Path, bucket: str, prefix: str, env: dict[str, str]):
    """A broker on a fresh moto bucket with `env` on top of the S3 settings; yields the
    broker, the moto server and the broker's admin port."""
    moto = MotoServer(tmp / "moto.log")
    moto.start()
    moto.create_bucket(bucket)
    admin_port = free_port()
    broker = LocalBroker(tmp / "data", free_port(), tmp)
    broker.extra_env = {**s3_env(moto.endpoint, bucket, prefix, 10_000), **env,
                        "INKLESS__ADMIN__LISTEN": f"127.0.0.1:{admin_port}"}
    broker.start()
    try:
        yield broker, moto, admin_port
    finally:
        try:
            stop_and_check(broker)
        finally:
            moto.stop()


def metric(admin_port: int, name: str) -> int:
    """A counter or gauge without labels from the broker's /metrics (0 when absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf"^{name} (\d+)$", text, re.M)
    return int(m.group(1)) if m else 0


def wait_until(what: str, check, timeout: float = 60.0):
    """Polls `check` until it returns something true, and returns that; fails the test after
    `timeout` seconds, naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout} s waiting until {what} (last: {last!r})", pytrace=False)
