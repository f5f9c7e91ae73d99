"""Fixtures for the server tests: a real `ingot serve` on the default model (SmolLM2-135M,
cached by Ingot) on a free loopback port, driven through the official `openai` package and
raw HTTP (httpx).

`INGOT_BIN` names the binary (./test.sh sets it). One shared server runs the tests that do
not change its state; tests that need other flags (a tiny queue) or that stop the server
start their own through `start_server`.
"""

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import openai
import pytest

REPO = Path(__file__).resolve().parents[2]
API_KEY = "test-key"
MODEL = "SmolLM2-135M-Instruct"


def ingot_bin():
    return os.environ.get("INGOT_BIN", str(REPO / "target" / "release" / "ingot"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """An `ingot serve` child process and where to reach it."""

    def __init__(self, *flags, env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="ingot-serve-", suffix=".log", delete=False)
        defaults = [] if "--kv-cache-memory" in flags else ["--kv-cache-memory", "512MiB"]
        cmd = [ingot_bin(), "serve", "--host", "127.0.0.1", "--port", str(self.port),
               *defaults, *flags]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})
        self._wait_healthy()

    def _wait_healthy(self, timeout=300):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ingot serve exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"ingot serve did not become healthy:\n{self.log_text()}")

    def log_text(self):
        return Path(self.log.name).read_text(errors="replace")

    def metrics(self):
        """The unlabelled-by-reason samples of /metrics as {name: value}."""
        text = httpx.get(self.url + "/metrics", timeout=10).text
        out = {}
        for m in re.finditer(r"^(ingot:[a-zA-Z0-9_:]+)\{([^}]*)\} (\S+)$", text, re.M):
            name, labels, value = m.groups()
            reason = re.search(r'finished_reason="(\w+)"', labels)
            key = f"{name}[{reason.group(1)}]" if reason else name
            if 'le="' not in labels:
                out[key] = float(value)
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def server():
    s = Server("--api-key", API_KEY, "--max-request-body", "64KiB")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def http(server):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"},
                      timeout=120) as c:
        yield c


@pytest.fixture
def start_server():
    """Starts extra servers with the given flags; stops them after the test."""
    started = []

    def start(*flags, env=None):
        s = Server(*flags, env=env)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
