"""Run the real service (``python service.py``) as a child process for end-to-end tests."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import httpx

from tests.conftest import ROOT

PORT_LINE = re.compile(r"serving .* on http://127\.0\.0\.1:(\d+)/")


def write_config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "feeds.toml"
    config.write_text(
        f"""
articles = ["articles"]
output = "output"
state = "state/feeds.db"
base_url = "http://127.0.0.1/"
[service]
rescan_seconds = 600
debounce_seconds = 0.2
settle_seconds = 0.3
[[topics]]
name = "北交所"
slug = "beijiaosuo"
keywords = ["北交所", "北京证券交易所", "北证50"]
[[topics]]
name = "新三板"
slug = "xinsanban"
keywords = ["新三板"]
{extra}
""",
        "utf-8",
    )
    (tmp_path / "articles").mkdir(exist_ok=True)
    return config


class ServiceProcess:
    started: ClassVar[list[ServiceProcess]] = []  # killed after each test (conftest)

    def __init__(self, config: Path, *extra: str) -> None:
        ServiceProcess.started.append(self)
        self.config = config
        self.log: list[str] = []
        self.port: int | None = None
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "service.py"), "--config", str(config), "--port", "0",
             *extra],
            cwd=config.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip())
            found = PORT_LINE.search(line)
            if found:
                self.port = int(found.group(1))
            if "rescan:" in line or "stopped" in line:
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 30) -> ServiceProcess:
        """Serving and caught up with the first scan."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.port is not None and self.health().get("last_scan") is not None:
                return self
            if self.proc.poll() is not None:
                raise AssertionError("service exited early:\n" + "\n".join(self.log))
            time.sleep(0.1)
        raise AssertionError("service not ready:\n" + "\n".join(self.log))

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, **headers: str) -> httpx.Response:
        return httpx.get(self.url(path), headers=headers, timeout=10)

    def health(self) -> dict[str, Any]:
        data: dict[str, Any] = self.get("/healthz").json()
        return data

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, float]:
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    @classmethod
    def kill_leftovers(cls, since: int) -> None:
        """Kill the services started since the first ``since`` (a failed test's leftovers)."""
        while len(cls.started) > since:
            cls.started.pop().kill()


def wait_for(check: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last value {last!r}")
