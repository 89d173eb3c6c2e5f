"""Issue 13's findings at the command line: nothing lost, one-line errors, streamed and resumable output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import RAVDESS, tone
from ser.cli import main
from ser.inference import Recognizer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SER = [sys.executable, "-m", "ser"]


@pytest.fixture(scope="module")
def model_dir(corpus, cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("robust") / "model"
    code = main(["train", "-q", "--config", "tiny", "--set", "train.epochs=2", "--data", str(corpus),
                 "--out", str(out), "--cache", str(cache_dir), "--jobs", "1"])
    assert code == 0
    return out


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- 1. train --out never replaces what is not a model folder ----------------------------------------

def _train(capsys, corpus, cache_dir, out, *extra):
    return run(capsys, "train", "-q", "--config", "tiny", "--set", "train.epochs=1", "--data", corpus,
               "--out", out, "--cache", cache_dir, "--jobs", "1", *extra)


def test_train_out_refuses_a_users_folder_and_files(capsys, corpus, cache_dir, tmp_path, monkeypatch):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("precious")
    code, _, err = _train(capsys, corpus, cache_dir, folder)
    assert code == 1 and "not a model folder" in one_line_error(err)
    assert sorted(p.name for p in folder.iterdir()) == ["chapter1.tex"]
    assert (folder / "chapter1.tex").read_text() == "precious"

    note = tmp_path / "some_file.txt"
    note.write_text("keep me")
    code, _, err = _train(capsys, corpus, cache_dir, note)
    assert code == 1 and "not a folder" in one_line_error(err)
    assert note.read_text() == "keep me" and not (tmp_path / ".some_file.txt.old").exists()

    monkeypatch.chdir(folder)
    code, _, err = _train(capsys, corpus, cache_dir, ".")
    assert code == 1 and "not a model folder" in one_line_error(err)
    assert sorted(p.name for p in folder.iterdir()) == ["chapter1.tex"]


def test_train_over_a_model_folder_needs_force(capsys, corpus, cache_dir, tmp_path):
    out = tmp_path / "model"
    assert _train(capsys, corpus, cache_dir, out)[0] == 0
    before = (out / "SHA256SUMS").read_text()
    code, _, err = _train(capsys, corpus, cache_dir, out)
    assert code == 1 and "use --force" in one_line_error(err)
    assert (out / "SHA256SUMS").read_text() == before
    assert _train(capsys, corpus, cache_dir, out, "--force")[0] == 0
    Recognizer.load(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # nothing hidden left beside it


def test_empty_folder_is_a_valid_out(capsys, corpus, cache_dir, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert _train(capsys, corpus, cache_dir, out)[0] == 0
    Recognizer.load(out)


def test_save_cleans_work_folders_of_killed_saves(model_dir, tmp_path):
    rec = Recognizer.load(model_dir)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".model.tmp-{dead}-abc123"
    stale.mkdir()
    (stale / "model.keras").write_bytes(b"half")
    rec.save(tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


# --- 2. non-finite features or scores are errors ----------------------------------------------------

def test_huge_float_wav_is_an_error_not_nan(capsys, tmp_path):
    path = tmp_path / "loud.wav"
    sf.write(path, (tone("happy", seconds=2.0) * 1e20).astype(np.float32), 16000, subtype="FLOAT")
    for model in ("fast", "default"):
        code, out, err = run(capsys, "predict", "--model", model, "--json", path)
        assert code == 1 and out == "", out
        assert str(path) in one_line_error(err)


def test_predict_in_memory_extreme_values(model_dir):
    from ser.errors import SERError

    rec = Recognizer.load("fast")
    y = tone("sad", seconds=2.0).astype(np.float64)
    with pytest.raises(SERError):
        rec.predict(y * 1e30, 16000)
    with pytest.raises(TypeError, match="sequence of paths"):
        rec.predict_files(str(EXAMPLES / "03-01-03-02-01-02-13.flac"))


# --- 4. output errors -----------------------------------------------------------------------------

def test_stdout_to_a_full_disk_and_a_closed_pipe():
    clip = str(EXAMPLES / "03-01-03-02-01-02-13.flac")
    with open("/dev/full", "w") as full:
        proc = subprocess.run([*SER, "predict", "--model", "fast", "--json", clip], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "standard output: cannot write results (No space left on device)" in proc.stderr
    # A reader that stops after one line: quiet exit, no traceback.
    proc = subprocess.run(f"{sys.executable} -m ser predict --model fast -q --csv {EXAMPLES} | head -1",
                          shell=True, capture_output=True, text=True, timeout=120)
    assert proc.stdout.startswith("source,label") and proc.stderr == "", proc.stderr


def test_timeline_to_a_read_only_folder_writes_nothing(capsys, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o500)
    # root ignores folder permissions: /proc (no new files, even for root) stands in then.
    stem = Path("/proc/ser-timeline") if os.access(folder, os.W_OK) else folder / "out"
    try:
        clip = EXAMPLES / "03-01-03-02-01-02-13.flac"
        code, out, err = run(capsys, "predict", "--model", "fast", "--timeline", clip, "--out", stem)
        assert code == 1 and "cannot write the timeline" in one_line_error(err)
        assert not list(stem.parent.glob(stem.name + ".*"))
    finally:
        os.chmod(folder, 0o700)


def test_save_timeline_is_all_or_nothing(tmp_path, monkeypatch):
    from ser import timeline as tl
    from ser.errors import OutputError

    segments = [tl.Segment(0.0, 1.0, "happy", 0.9, {"happy": 0.9, "sad": 0.1})]
    real = tl.atomic_write_bytes

    def fail_on_png(path, data):
        if str(path).endswith(".png"):
            raise OSError(28, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(tl, "atomic_write_bytes", fail_on_png)
    with pytest.raises(OutputError, match="out.png: cannot write the timeline"):
        tl.save_timeline(segments, tmp_path / "out", source="x.wav", duration=1.0, classes=["happy", "sad"])
    assert list(tmp_path.iterdir()) == []


def test_output_paths_that_are_folders(capsys, corpus, model_dir, tmp_path):
    code, _, err = run(capsys, "data", "index", corpus, "-o", tmp_path)
    assert code == 1 and "is a folder" in one_line_error(err)
    code, _, err = run(capsys, "export", model_dir, "--format", "onnx", "--out", tmp_path)
    assert code == 1 and "is a folder" in one_line_error(err)
    code, _, err = run(capsys, "predict", "--model", "fast", EXAMPLES, "--json", "--output", tmp_path)
    assert code == 1 and "is a folder" in one_line_error(err)


# --- 8, 9, 10. arguments ----------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["predict", "--batch-size", "0", "x.wav"],
    ["predict", "--jobs", "-3", "x.wav"],
    ["evaluate", "--data", "x", "--protocol", "group-kfold", "--folds", "0", "--out", "o"],
    ["evaluate", "--data", "x", "--protocol", "group-kfold", "--inner-folds", "1", "--out", "o"],
    ["train", "--data", "x", "--out", "o", "--jobs", "-3"],
    ["predict", "-", "-"],
    ["predict", "--timeline", "a.wav", "extra.wav"],
    ["predict", "--timeline", "-"],
    ["predict", "x.wav", "--resume"],
])
def test_bad_arguments_are_usage_errors(capsys, argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        code = main(argv)
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("ser")
    assert sorted(os.listdir(tmp_path)) == []


def test_config_that_is_not_json(capsys, corpus, tmp_path):
    wav = tmp_path / "some.wav"
    sf.write(wav, tone("calm"), 16000)
    code, _, err = run(capsys, "train", "--data", corpus, "--out", tmp_path / "m", "--config", wav)
    assert code == 1 and "not a readable JSON config" in one_line_error(err)
    assert not (tmp_path / "m").exists()


def test_evaluate_writes_nothing_when_the_protocol_cannot_run(capsys, corpus, cache_dir, tmp_path):
    out = tmp_path / "run"
    code, _, err = run(capsys, "evaluate", "--data", corpus, "--config", "tiny", "--protocol", "group-kfold",
                       "--folds", "50", "--out", out, "--cache", cache_dir)
    assert code == 1 and one_line_error(err)
    assert not out.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    code, _, err = run(capsys, "evaluate", "--data", corpus, "--config", "tiny", "--protocol", "seed-split",
                       "--out", mine, "--cache", cache_dir)
    assert code == 1 and "not a run folder" in one_line_error(err)
    assert os.listdir(mine) == ["notes.txt"]


def test_folder_with_links_that_lead_nowhere_and_other_files(capsys, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    sf.write(folder / "a.wav", tone("angry", seconds=1.5), 16000)
    os.symlink(folder / "loop.wav", folder / "loop.wav")  # a link to itself
    (folder / "voice.m4a").write_bytes(b"\0" * 100)
    code, out, err = run(capsys, "predict", "--model", "fast", "--json", folder)
    assert code == 1
    assert [json.loads(line)["source"] for line in out.splitlines()] == [str(folder / "a.wav")]
    assert f"error: {folder / 'loop.wav'}" in err
    assert "skipped 1 files" in err and ".m4a 1" in err


# --- streaming output and --resume ------------------------------------------------------------------

def test_output_file_resume_and_force(capsys, tmp_path):
    out = tmp_path / "results.jsonl"
    code, stdout, _ = run(capsys, "predict", "--model", "fast", "-q", EXAMPLES, "--output", out)
    assert code == 0 and stdout == ""
    full = out.read_text().splitlines()
    assert len(full) == 4
    # An interrupted run: two finished lines and half of a third.
    out.write_text("\n".join(full[:2]) + "\n" + full[2][:20])
    code, _, err = run(capsys, "predict", "--model", "fast", "-q", EXAMPLES, "--output", out)
    assert code == 1 and "--resume" in one_line_error(err)
    code, _, err = run(capsys, "predict", "--model", "fast", "-q", EXAMPLES, "--output", out, "--resume")
    assert code == 0 and "resumed: 2 of 4" in err
    assert out.read_text().splitlines() == full
    code, _, err = run(capsys, "predict", "--model", "fast", "-q", EXAMPLES, "--output", out, "--force")
    assert code == 0 and out.read_text().splitlines() == full
    csv_out = tmp_path / "r.csv"
    assert run(capsys, "predict", "--model", "fast", "-q", EXAMPLES, "-o", csv_out)[0] == 0
    rows = csv_out.read_text().splitlines()
    csv_out.write_text("\n".join(rows[:2]) + "\n")
    assert run(capsys, "predict", "--model", "fast", "-q", EXAMPLES, "-o", csv_out, "--resume")[0] == 0
    assert csv_out.read_text().splitlines() == rows


@pytest.mark.skipif(not RAVDESS.is_dir(), reason="needs the shared RAVDESS copy")
def test_results_stream_before_the_run_ends():
    """With 200 files, the first results are on stdout long before the last file is read."""
    files = sorted(RAVDESS.glob("Actor_0[12]/*.flac"))[:200]
    proc = subprocess.Popen([*SER, "predict", "--model", "default", "--json", "-q", "--batch-size", "8",
                             *map(str, files)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert proc.poll() is None, "the run ended before its first line was read"
        assert json.loads(first)["source"] == str(files[0])
    finally:
        proc.kill()
        proc.communicate()
