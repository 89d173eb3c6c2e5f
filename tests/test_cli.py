"""The CLI through main([...]): every subcommand, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import tone
from ser.cli import main
from ser.errors import SERError


@pytest.fixture(scope="module")
def model_dir(corpus, cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "model"
    code = main(["train", "-q", "--config", "tiny", "--set", "train.epochs=3", "--data", str(corpus),
                 "--out", str(out), "--cache", str(cache_dir), "--jobs", "1", "--data-license", "synthetic"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.wav").write_bytes(b"")
    (d / "text.wav").write_text("this is not audio")
    sf.write(d / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    sf.write(d / "short.wav", tone("happy")[:800], 16000)
    sf.write(d / "full.wav", tone("sad", seconds=2.0), 16000)
    data = (d / "full.wav").read_bytes()
    (d / "truncated.wav").write_bytes(data[: len(data) // 2])
    # One hour at 1 kHz: a genuinely hour-long file, cheap to write.
    sf.write(d / "hour.wav", np.full(3600 * 1000, 0.1, dtype=np.float32), 1000, subtype="PCM_16")
    return d


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_version_and_usage_errors(capsys):
    """--help and --version exit 0, a usage error exits 2; python -m ser works."""
    for argv, expected in ((["--help"], 0), (["--version"], 0), (["predict"], 2), (["bogus"], 2)):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == expected
    proc = subprocess.run([sys.executable, "-m", "ser", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("ser ")


def test_data_index_and_summary(capsys, corpus, tmp_path):
    """index writes a manifest; summary reads it back with class and speaker counts."""
    manifest = tmp_path / "m.csv"
    code, out, _ = run(capsys, "data", "index", str(corpus), "-o", str(manifest))
    assert code == 0 and "96 clips, 6 speakers" in out
    assert manifest.read_text().splitlines()[0] == "path,emotion,actor,gender,intensity,statement,repetition,corpus"
    code, out, _ = run(capsys, "data", "summary", str(manifest))
    assert code == 0 and "happy 12" in out and "16000 Hz: 96" in out
    code, out, _ = run(capsys, "data", "summary", "--json", str(corpus))
    assert code == 0 and json.loads(out)["clips"] == 96


def test_bad_manifests_give_one_line(capsys, corpus, tmp_path):
    """Unknown labels and missing paths: exit 1, one line naming the file, no traceback."""
    wav = next(corpus.rglob("*.wav"))
    unknown = tmp_path / "unknown.csv"
    unknown.write_text(f"path,label\n{wav},happy\n{wav},bored\n")
    code, _, err = run(capsys, "data", "summary", str(unknown))
    assert code == 1 and err.strip() == f"error: {unknown}:3: label='bored': unknown emotion; expected one of " \
        "neutral, calm, happy, sad, angry, fearful, disgust, surprised"
    missing = tmp_path / "missing.csv"
    missing.write_text("path,label\nnope1.wav,happy\nnope2.wav,sad\n")
    code, _, err = run(capsys, "train", "--data", str(missing), "--out", str(tmp_path / "m"), "--config", "tiny")
    assert code == 1 and "audio file not found" in err and "nope1.wav (and 1 more)" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2  # device line + error
    assert not (tmp_path / "m").exists()
    code, _, err = run(capsys, "data", "index", str(tmp_path / "absent"))
    assert code == 1 and err.strip().endswith("not a folder")


def test_bad_config_values_give_one_line(capsys, corpus, tmp_path):
    """A wrong --set or config file names the field."""
    code, _, err = run(capsys, "config", "--config", "seed_cnn", "--set", "train.epochs=-1")
    assert code == 1 and "train.epochs=-1" in err
    code, out, _ = run(capsys, "config", "--config", "seed_cnn", "--set", "train.epochs=5")
    assert code == 0 and json.loads(out)["train"]["epochs"] == 5
    code, _, err = run(capsys, "config", "--config", str(tmp_path / "none.json"))
    assert code == 1 and "config file not found" in err


def test_predict_table_json_and_bad_files(capsys, model_dir, corpus, bad_files):
    """Good files are predicted, each bad file gets one line, the exit code is 1."""
    good = sorted(corpus.rglob("*.wav"))[:2]
    code, out, err = run(capsys, "predict", "-q", "--json", "--model", str(model_dir), *map(str, good),
                         str(bad_files), str(bad_files / "absent.wav"))
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and [r["source"] for r in lines] == [str(p) for p in good] + [str(bad_files / "full.wav")]
    assert set(lines[0]["scores"]) == {"neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"}
    expected = {"empty.wav": "empty file", "text.wav": "not a readable audio file", "silent.wav": "silent",
                "short.wav": "shorter than the 0.1 s minimum", "truncated.wav": "truncated file",
                "hour.wav": "3600.0 s is longer than the 60 s limit", "absent.wav": "file not found"}
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    for name, problem in expected.items():
        assert any(name in line and problem in line for line in errors), (name, errors)
    assert "7 of 10 files failed" in err and "Traceback" not in err
    code, out, _ = run(capsys, "predict", "-q", "--model", str(model_dir), str(good[0]))
    assert code == 0 and out.splitlines()[0].startswith("file") and str(good[0]) in out


def test_predict_errors_without_any_good_file(capsys, model_dir, tmp_path):
    """A missing model folder or an empty input folder is a handled error."""
    code, _, err = run(capsys, "predict", "--model", str(tmp_path / "none"), str(tmp_path))
    assert code == 1 and "no audio files found" in err
    (tmp_path / "x.wav").write_bytes(b"")
    code, _, err = run(capsys, "predict", "--model", str(tmp_path / "none"), str(tmp_path / "x.wav"))
    assert code == 1 and "model folder not found" in err


def test_verbose_shows_the_traceback(model_dir, tmp_path):
    """-v re-raises the error so the traceback is visible."""
    with pytest.raises(SERError):
        main(["data", "index", "-v", str(tmp_path / "absent")])


def test_evaluate_seed_split(capsys, corpus, cache_dir, tmp_path):
    """evaluate prints per-fold and pooled metrics and the confusion matrix, and writes the report."""
    code, out, _ = run(capsys, "evaluate", "-q", "--config", "tiny", "--set", "train.epochs=1", "--protocol",
                       "seed-split", "--data", str(corpus), "--out", str(tmp_path / "run"), "--cache", str(cache_dir),
                       "--jobs", "1")
    assert code == 0 and "pooled (20 clips)" in out and "true \\ pred" in out
    assert (tmp_path / "run" / "report.md").exists()


def test_grid_command(capsys, corpus, cache_dir, tmp_path):
    """grid writes its table and the best config, which is a valid config file."""
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"model.dense_units": [8, 16]}))
    code, out, _ = run(capsys, "grid", "-q", "--config", "tiny", "--set", "train.epochs=1", "--data", str(corpus),
                       "--grid", str(grid), "--inner-folds", "2", "--out", str(tmp_path / "g"), "--cache",
                       str(cache_dir))
    assert code == 0 and out.count("inner UAR") == 2
    code, out, _ = run(capsys, "config", "--config", str(tmp_path / "g" / "best_config.json"))
    assert code == 0 and json.loads(out)["model"]["dense_units"] in (8, 16)


def test_download_failure_is_one_line(capsys, tmp_path):
    """An unreachable download URL (a closed local port) is a handled error."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = run(capsys, "data", "download", "-q", str(tmp_path / "d"), "--url",
                       f"http://127.0.0.1:{port}/a.zip")
    assert code == 1 and "connection failed" in err and "Traceback" not in err


def test_evaluate_a_trained_model_on_another_corpus(capsys, model_dir, tmp_path):
    """Cross-corpus scoring: shared emotions only, left-out labels named, report written."""
    emodb = tmp_path / "emodb"
    emodb.mkdir()
    letters = {"W": "angry", "F": "happy", "T": "sad", "N": "neutral", "L": None}
    for speaker in ("03", "08"):
        for i, (letter, emotion) in enumerate(letters.items()):
            sf.write(emodb / f"{speaker}a0{i}{letter}a.wav", tone(emotion or "calm", seconds=1.5), 16000)
    out = tmp_path / "cross"
    code, stdout, _ = run(capsys, "evaluate", "-q", "--model", str(model_dir), "--data", str(emodb), "--out", str(out))
    assert code == 0, stdout
    assert "scored over: neutral, happy, sad, angry (8 clips)" in stdout
    assert "left out (model classes not in the data): calm, fearful, disgust, surprised" in stdout
    report = json.loads((out / "report.json").read_text())
    assert len(report["confusion"]) == 4 and report["n"] == 8 and 0 <= report["uar"] <= 1
    code, _, err = run(capsys, "evaluate", "--data", str(emodb))
    assert code == 1 and "give --protocol and --out" in err


def test_predict_stdin_glob_csv_and_onnx_runtime(capsys, model_dir, corpus, monkeypatch):
    """'-' reads standard input, quoted globs expand, --csv has a header, ONNX and Keras agree."""
    import io

    wav = sorted(corpus.rglob("*.wav"))[0]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(wav.read_bytes())))
    code, out, _ = run(capsys, "predict", "-q", "--json", "--model", str(model_dir), "-")
    from_stdin = json.loads(out)
    assert code == 0 and from_stdin["source"] == "-"
    code, out, _ = run(capsys, "predict", "-q", "--csv", "--model", str(model_dir), str(corpus / "Actor_01" / "*.wav"))
    rows = out.splitlines()
    assert code == 0 and rows[0].startswith("source,label,confidence,duration,neutral") and len(rows) == 17
    code, out, _ = run(capsys, "predict", "-q", "--json", "--runtime", "keras", "--model", str(model_dir), str(wav))
    keras_scores = json.loads(out)["scores"]
    assert (model_dir / "model.onnx").exists()
    for emotion, p in from_stdin["scores"].items():  # stdin went through ONNX Runtime (runtime auto)
        assert abs(p - keras_scores[emotion]) < 1e-4
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"not audio")))
    code, _, err = run(capsys, "predict", "-q", "--model", str(model_dir), "-")
    assert code == 1 and "error: -: not a readable audio file" in err


def test_export_formats(capsys, model_dir, tmp_path):
    """ser export writes ONNX, TFLite and Keras files."""
    for fmt in ("onnx", "tflite", "keras"):
        out = tmp_path / f"m.{fmt}"
        code, stdout, _ = run(capsys, "export", "-q", str(model_dir), "--format", fmt, "--out", str(out))
        assert code == 0 and out.stat().st_size > 1000, (fmt, stdout)


def test_timeline_of_a_long_recording(capsys, model_dir, tmp_path):
    """--timeline finds the speech segments of a recording and writes JSON, CSV and PNG."""
    parts = []
    for emotion in ("happy", "sad", "angry"):
        parts += [np.zeros(16000, np.float32), tone(emotion, seconds=2.0)]
    parts.append(np.zeros(16000, np.float32))
    recording = tmp_path / "call.wav"
    sf.write(recording, np.concatenate(parts), 16000)
    code, out, err = run(capsys, "predict", "-q", "--json", "--model", str(model_dir), "--timeline", str(recording),
                         "--out", str(tmp_path / "call-emotions"))
    segments = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and segments, err
    # The tiny model reads 1 s, so speech is cut into pieces of at most 1 s: join touching pieces.
    assert all(s["end"] - s["start"] <= 1.0 + 1e-6 for s in segments)
    spans = [[segments[0]["start"], segments[0]["end"]]]
    for segment in segments[1:]:
        if segment["start"] - spans[-1][1] < 0.05:
            spans[-1][1] = segment["end"]
        else:
            spans.append([segment["start"], segment["end"]])
    assert len(spans) == 3, spans
    for (start, end), truth in zip(spans, (1.0, 4.0, 7.0)):
        assert abs(start - truth) < 0.15 and abs(end - (truth + 2.0)) < 0.15
    for suffix in (".json", ".csv", ".png"):
        assert (tmp_path / f"call-emotions{suffix}").stat().st_size > 0


def test_train_and_evaluate_on_two_corpora(capsys, corpus, cache_dir, tmp_path):
    """Several --data corpora train together; group-kfold keeps every speaker (of either corpus) on one side."""
    emodb = tmp_path / "emodb"
    emodb.mkdir()
    for speaker in ("03", "08", "09"):
        for i, (letter, emotion) in enumerate({"W": "angry", "F": "happy", "T": "sad", "N": "neutral"}.items()):
            sf.write(emodb / f"{speaker}a0{i}{letter}a.wav", tone(emotion, seconds=1.2), 16000)
    code, out, _ = run(capsys, "evaluate", "-q", "--config", "tiny", "--set", "train.epochs=1", "--data", str(corpus),
                       "--data", str(emodb), "--protocol", "group-kfold", "--folds", "3", "--out", str(tmp_path / "r"),
                       "--cache", str(cache_dir), "--jobs", "1")
    assert code == 0 and "pooled (108 clips)" in out
    for fold in range(1, 4):
        result = json.loads((tmp_path / "r" / f"fold_{fold}" / "result.json").read_text())
        assert len(result["test_speakers"]) >= 2
    tested = [s for fold in range(1, 4) for s in json.loads(
        (tmp_path / "r" / f"fold_{fold}" / "result.json").read_text())["test_speakers"]]
    assert len(tested) == len(set(tested)) == 9 and {"emodb:03", "1"} <= set(tested)
