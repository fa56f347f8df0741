"""A real S3 API server for tests (moto's server, in its own process) and a TCP proxy in
front of it that a test can cut and restore, to make the object store fail on demand."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import pytest

from conftest import free_port, port_open


class MotoServer:
    def __init__(self, log_path):
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"moto server did not start; see {self.log_path}", pytrace=False)
            time.sleep(0.1)

    def create_bucket(self, name: str) -> None:
        # Path-style CreateBucket; moto accepts any credentials.
        req = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200, r.status

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under `prefix` (ListObjectsV2, page by page)."""
        keys: list[str] = []
        token = None
        ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            url = f"{self.endpoint}/{bucket}?{urllib.parse.urlencode(query)}"
            with urllib.request.urlopen(url, timeout=10) as r:
                root = ET.fromstring(r.read())
            keys += [k.text or "" for k in root.findall("s3:Contents/s3:Key", ns)]
            token_el = root.find("s3:NextContinuationToken", ns)
            if token_el is None or not token_el.text:
                return sorted(keys)
            token = token_el.text

    def put_object(self, bucket: str, key: str, body: bytes) -> None:
        req = urllib.request.Request(f"{self.endpoint}/{bucket}/{key}", data=body, method="PUT")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200, r.status

    def delete_object(self, bucket: str, key: str) -> None:
        # moto refuses an unsigned DELETE: sign it with boto3 (a dependency of moto).
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
        s3.delete_object(Bucket=bucket, Key=key)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class CuttableProxy:
    """Forwards 127.0.0.1:port to a target, with two faults a test can switch on:

    - `cut()` drops every connection and refuses new ones until `restore()`;
    - `blackhole()` keeps connections open and accepts new ones but forwards nothing until
      `restore()`, like a network that drops packets: nothing is lost, since TCP would
      retransmit, so what was sent during the black hole arrives after `restore()`.
    """

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.flowing = threading.Event()  # cleared while black-holed
        self.flowing.set()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                c.close()
                continue
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._connect, args=(c,), daemon=True).start()

    def _connect(self, c: socket.socket) -> None:
        self.flowing.wait()  # a black hole lets no byte through, not even the target's SYN
        try:
            t = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            t.settimeout(None)  # an idle connection (a pooled one) stays open
        except OSError:
            c.close()
            return
        with self.lock:
            if not self.up:
                c.close()
                t.close()
                return
            self.conns.append(t)
        threading.Thread(target=self._pump, args=(c, t), daemon=True).start()
        threading.Thread(target=self._pump, args=(t, c), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                self.flowing.wait()  # held, not dropped, while black-holed
                if not data or not self.up:
                    break
                dst.sendall(data)
        except OSError:
            pass
        with self.lock:
            for s in (src, dst):
                _close(s)
                if s in self.conns:
                    self.conns.remove(s)

    def cut(self) -> None:
        self.up = False
        with self.lock:
            for s in self.conns:
                _close(s)
            self.conns.clear()
        self.flowing.set()  # held pumps wake up and see the cut

    def blackhole(self) -> None:
        self.flowing.clear()

    def restore(self) -> None:
        self.up = True
        self.flowing.set()

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()


def _close(s: socket.socket) -> None:
    """shutdown() first: it wakes a thread blocked in recv() on the socket (close() alone
    would leave that recv, and so the connection, open)."""
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


def s3_env(endpoint: str, bucket: str, prefix: str, upload_timeout_ms: int) -> dict[str, str]:
    return {
        "INKLESS__STORAGE__OBJECT_STORE": f"s3://{bucket}/{prefix}",
        "INKLESS__STORAGE__S3__ENDPOINT": endpoint,
        "INKLESS__STORAGE__S3__REGION": "us-east-1",
        "INKLESS__STORAGE__S3__ACCESS_KEY_ID": "test",
        "INKLESS__STORAGE__S3__SECRET_ACCESS_KEY": "test",
        "INKLESS__STORAGE__S3__PATH_STYLE": "true",
        "INKLESS__STORAGE__S3__ALLOW_HTTP": "true",
        "INKLESS__PRODUCE__UPLOAD_TIMEOUT_MS": str(upload_timeout_ms),
    }
