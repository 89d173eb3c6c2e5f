"""Helpers for the service tests: a real ``ser serve`` process on a free loopback port, test audio."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

import ser

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
RAVDESS = ROOT.parent / "shared" / "data" / "ravdess"
SRC = Path(ser.__file__).resolve().parents[1]  # the ser under test, also in the server's process


class Server:
    """``python -m ser serve --port 0 ARGS`` in a subprocess; :attr:`url` once it listens.

    The server's standard error is collected in :attr:`log` (read it when a test fails).
    """

    def __init__(self, *args: str, tmp: Path, env: dict | None = None, timeout: float = 90.0) -> None:
        self.tmp = Path(tmp)
        (self.tmp / "tmp").mkdir(parents=True, exist_ok=True)
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
                       "TMPDIR": str(self.tmp / "tmp"), "SER_SPEAKERS_DIR": str(self.tmp / "speakers"),
                       "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "ser", "serve", "--port", "0", "-q", *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=environment)
        self.log: list[str] = []
        lines: queue.Queue = queue.Queue()

        def drain() -> None:
            for line in self.proc.stderr:
                self.log.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + timeout
        self.url = None
        while self.url is None:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("ser serve did not start:\n" + "".join(self.log))
            match = re.search(r"listening on (http://127\.0\.0\.1:(\d+))/", line)
            if match:
                self.url, self.port = match.group(1), int(match.group(2))

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://")

    def temporaries(self) -> list[Path]:
        """Upload folders the server left in its temporary directory."""
        return sorted((self.tmp / "tmp").glob("ser-serve-*"))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def clips(n: int) -> list[Path]:
    """``n`` RAVDESS clips (the four examples first, then actors of the shared copy when present)."""
    found = sorted(EXAMPLES.glob("*.flac"))
    if RAVDESS.is_dir():
        found += sorted(RAVDESS.glob("Actor_0[3-9]/*.flac"))[::7]
    if len(found) < n:
        import pytest

        pytest.skip(f"needs {n} RAVDESS clips (../shared/data/ravdess)")
    return found[:n]


def conversation(path: Path, files: list[Path], *, sr: int = 16000, gap: float = 1.0) -> Path:
    """A 16-bit WAV of ``files`` in a row with ``gap`` seconds of silence before, between and after."""
    import soxr

    parts = [np.zeros(int(gap * sr), dtype=np.float32)]
    for f in files:
        y, rate = sf.read(f, dtype="float32", always_2d=True)
        y = y.mean(axis=1)
        if rate != sr:
            y = soxr.resample(y, rate, sr)
        parts += [y.astype(np.float32), np.zeros(int(gap * sr), dtype=np.float32)]
    sf.write(path, np.concatenate(parts), sr, subtype="PCM_16")
    return path
