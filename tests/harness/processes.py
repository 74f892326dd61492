"""Child processes with their own log file and process group."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something other than ``None``/``False``; return that.

    Raises ``TimeoutError`` after ``timeout`` seconds; ``on_timeout`` may add
    details to the message (for example what was seen instead).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            details = on_timeout() if on_timeout else ""
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}" + (f"\n{details}" if details else ""))
        time.sleep(interval)


# Envoy's start-up inventory (extensions, header maps): long and never the interesting part.
_NOISE = re.compile(r"\]\[info\]\[main\] \[source/server/server\.cc:(4[0-9][0-9]|5[0-4][0-9])\]")


def tail(path: Path, lines: int = 60) -> str:
    """The last ``lines`` lines of a log file ("" if it does not exist), without Envoy's start-up inventory."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", "replace")
    kept = [line for line in text.splitlines() if not _NOISE.search(line)]
    return "\n".join(kept[-lines:])


class ManagedProcess:
    """A child process in its own process group, stdout and stderr going to ``log_path``."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"### {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # own process group: stop() can signal the whole tree
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_running(self) -> None:
        if self.proc is None:
            raise RuntimeError(f"{self.name} was never started")
        code = self.proc.poll()
        if code is not None:
            raise RuntimeError(f"{self.name} exited with status {code}; log {self.log_path}:\n{self.log_tail()}")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it is still there after ``timeout``."""
        if self.proc is None or self.proc.returncode is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=timeout)
                break
            except subprocess.TimeoutExpired:
                continue
        if self.proc.returncode is None:
            self.proc.wait(timeout=timeout)

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)
