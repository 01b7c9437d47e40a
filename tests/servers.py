"""`squeeze serve` as a real process on a free loopback port, for the tests and the README examples.

The server picks the port (`--port 0`) and says it on stderr; readiness is `GET /health` answering 200,
polled against a deadline (no fixed sleeps). stderr goes to a file, so a chatty server never blocks on
a full pipe, and a failed start shows what it said.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_ADDRESS = re.compile(r"serving on (http://[^\s;]+)")


class Server:
    def __init__(self, args: list[str], env: dict[str, str] | None = None, deadline: float = 120.0,
                 ready: bool = True) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="squeeze-serve-", suffix=".log", delete=False)
        environment = dict(os.environ if env is None else env)
        environment["PYTHONPATH"] = str(ROOT) + os.pathsep + environment.get("PYTHONPATH", "")
        self.process = subprocess.Popen([sys.executable, "-m", "squeezecli", "serve", "--port", "0", *args],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log,
                                        env=environment, start_new_session=True)
        self.url = self._address(time.monotonic() + deadline)
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port = host, int(port)
        if ready:
            self.wait_ready(deadline)

    def _address(self, until: float) -> str:
        while time.monotonic() < until:
            found = _ADDRESS.search(self.stderr)
            if found:
                return found[1]
            if self.process.poll() is not None:
                raise RuntimeError(f"squeeze serve exited {self.process.returncode}: {self.stderr}")
            time.sleep(0.02)  # polling a file the child writes; bounded by the deadline
        self.stop()
        raise RuntimeError(f"squeeze serve said no address: {self.stderr}")

    def wait_ready(self, deadline: float = 120.0) -> None:
        until = time.monotonic() + deadline
        while time.monotonic() < until:
            if self.process.poll() is not None:
                raise RuntimeError(f"squeeze serve exited {self.process.returncode}: {self.stderr}")
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"squeeze serve not ready after {deadline} s: {self.stderr}")

    @property
    def stderr(self) -> str:
        return Path(self.log.name).read_text(encoding="utf-8", errors="replace")

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                raw: bytes | None = None, timeout: float = 120.0) -> tuple[int, Any, dict[str, str]]:
        """(status, JSON body or text, headers) of one request on a fresh connection."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            data = raw if raw is not None else None if body is None else json.dumps(body).encode()
            connection.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
            response = connection.getresponse()
            payload = response.read().decode("utf-8")
            try:
                decoded: Any = json.loads(payload)
            except ValueError:
                decoded = payload
            return response.status, decoded, {name.lower(): value for name, value in response.getheaders()}
        finally:
            connection.close()

    def metric(self, name: str) -> float:
        text = self.request("GET", "/metrics")[1]
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        return float(found[1]) if found else 0.0

    def terminate(self, timeout: float = 60.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)
