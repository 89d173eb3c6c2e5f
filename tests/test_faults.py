"""kill -9 at random points of train, evaluate, predict, enrol and model save (real processes, bounded).

Afterwards: no process of the killed command is left, nothing half-written sits under the user's names,
and the same command run again completes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import RAVDESS
from ser.inference import Recognizer

SER = [sys.executable, "-m", "ser"]
#: Kill points per command: enough to land in different phases, few enough for CI.
KILLS = 3


def start(argv, env) -> subprocess.Popen:
    # Its own session, so every process it starts (workers, trackers) is in a group we can inspect.
    return subprocess.Popen([*SER, *map(str, argv)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, start_new_session=True)


def kill_after(proc: subprocess.Popen, seconds: float) -> bool:
    """kill -9 after ``seconds`` (True), unless it ended first (False); then check no process is left."""
    try:
        proc.wait(timeout=seconds)
        killed = False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed = True
    proc.stderr.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            os.killpg(proc.pid, 0)  # anything left in the killed command's process group?
        except ProcessLookupError:
            return killed
        if time.monotonic() > deadline:
            left = subprocess.run(["ps", "-o", "pid,args", "-g", str(proc.pid)], capture_output=True, text=True)
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"orphan processes after kill -9:\n{left.stdout}")
        time.sleep(0.1)


def finish(argv, env) -> None:
    proc = subprocess.run([*SER, *map(str, argv)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


@pytest.fixture()
def env(tmp_path):
    return {**os.environ, "SER_CACHE_DIR": str(tmp_path / "cache"), "SER_SPEAKERS_DIR": str(tmp_path / "spk"),
            "TF_CPP_MIN_LOG_LEVEL": "3"}


def test_kill_train_and_model_save(corpus, tmp_path, env):
    rng = random.Random(13)
    out = tmp_path / "model"
    argv = ["train", "-q", "--config", "tiny", "--set", "train.epochs=4", "--data", corpus, "--out", out,
            "--jobs", "2"]
    for _ in range(KILLS):
        kill_after(start([*argv, "--force"], env), rng.uniform(1.0, 9.0))
        # Either no model, or a complete one (the folder appears only by a rename of a finished folder).
        assert [n for n in visible(tmp_path) if n != "cache"] in ([], ["model"])
        if out.exists():
            Recognizer.load(out)
    finish([*argv, "--force"], env)
    Recognizer.load(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model")]  # stale work folders cleaned


def test_kill_evaluate(corpus, tmp_path, env):
    rng = random.Random(7)
    out = tmp_path / "run"
    argv = ["evaluate", "-q", "--config", "tiny", "--set", "train.epochs=2", "--data", corpus,
            "--protocol", "group-kfold", "--folds", "3", "--out", out, "--jobs", "2"]
    for _ in range(KILLS):
        kill_after(start(argv, env), rng.uniform(1.0, 12.0))
        for name in ("report.json", *(f"fold_{k}/result.json" for k in (1, 2, 3))):
            if (out / name).exists():
                json.loads((out / name).read_text())  # complete, or absent
    finish(argv, env)
    report = json.loads((out / "report.json").read_text())
    assert len(report["summary"]["folds"]) == 3


@pytest.mark.skipif(not RAVDESS.is_dir(), reason="needs the shared RAVDESS copy")
def test_kill_predict_then_resume(tmp_path, env):
    rng = random.Random(3)
    files = sorted(RAVDESS.glob("Actor_0[34]/*.flac"))[:96]
    out = tmp_path / "results.jsonl"
    argv = ["predict", "-q", "--model", "default", "--batch-size", "8", "--output", out, "--resume", *files]
    for _ in range(KILLS):
        kill_after(start(argv, env), rng.uniform(1.0, 4.0))
    finish(argv, env)
    sources = [json.loads(line)["source"] for line in out.read_text().splitlines()]
    assert sorted(sources) == sorted(map(str, files))  # every file once: none lost, none twice
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("ser-stdin")]


def test_kill_speakers_enrol(tmp_path, env):
    rng = random.Random(5)
    clips = [str(p) for p in sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.flac"))]
    argv = ["speakers", "enrol", "anna", *clips]
    for _ in range(KILLS):
        kill_after(start(argv, env), rng.uniform(0.3, 2.5))
        folder = tmp_path / "spk"
        assert not folder.exists() or visible(folder) in ([], ["anna.npz"])
    finish(argv, env)
    assert visible(tmp_path / "spk") == ["anna.npz"]
