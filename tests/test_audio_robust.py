"""Issue 13's findings for audio input: every file or array ends in float32 mono samples or one AudioError.

Regression tests, one or more for each finding.
"""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.audio import load, read_info
from ser.errors import AudioError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SR = 16000


def sine(seconds: float = 1.0, *, freq: float = 440.0, amp: float = 0.3, sr: int = SR) -> np.ndarray:
    t = np.arange(round(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def wav_bytes(y: np.ndarray, sr: int = SR, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


# --- 1. a file without read permission ------------------------------------------------------------

def test_unreadable_file_is_named_permission_denied(tmp_path, monkeypatch):
    """A file that cannot be opened for reading says so (libsndfile alone says "System error.")."""
    path = tmp_path / "locked.wav"
    sf.write(path, sine(), SR)
    real_open = os.open

    def refuse(file, flags, *args, **kwargs):  # what the kernel answers a user without read permission
        if os.fspath(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, flags, *args, **kwargs)

    # Tests run as root, whom chmod does not stop: the refusal is simulated at the open() call.
    monkeypatch.setattr(os, "open", refuse)
    for read in (lambda p: load(p, sr=SR), read_info):
        with pytest.raises(AudioError, match=rf"^{re.escape(str(path))}: permission denied$"):
            read(path)


def test_folder_without_permission_is_named_permission_denied(tmp_path, monkeypatch):
    """stat() itself refused (a folder on the way without search permission) reads the same."""
    path = tmp_path / "private" / "clip.wav"
    real_stat = Path.stat

    def refuse(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", refuse)
    with pytest.raises(AudioError, match=rf"^{re.escape(str(path))}: permission denied$"):
        load(path, sr=SR)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_for_real(tmp_path):
    path = tmp_path / "locked.wav"
    sf.write(path, sine(), SR)
    path.chmod(0)
    try:
        with pytest.raises(AudioError, match=r"locked\.wav: permission denied$"):
            load(path, sr=SR)
    finally:
        path.chmod(0o600)


def test_named_pipe_does_not_hang(tmp_path):
    """Opening to check permission must not wait for a writer."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    path = tmp_path / "pipe.wav"
    os.mkfifo(path)
    start = time.perf_counter()
    with pytest.raises(AudioError, match=r"pipe\.wav: "):
        load(path, sr=SR)
    assert time.perf_counter() - start < 5
