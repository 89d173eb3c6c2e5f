"""ser doctor: the report's keys and values, the cache walk, checksum failures, exit codes, no TensorFlow."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ser
from ser import doctor, modelfolder
from ser.cli import main

PRETRAINED = Path(modelfolder.__file__).resolve().parent / "pretrained"
SRC = Path(ser.__file__).resolve().parents[1]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def isolated(monkeypatch, tmp_path):
    """Empty cache and profile folders, so the report does not depend on the user's."""
    monkeypatch.setenv("SER_CACHE_DIR", str(tmp_path / "no-cache"))
    monkeypatch.setenv("SER_SPEAKERS_DIR", str(tmp_path / "no-speakers"))
    return tmp_path


def test_json_keys_and_versions(capsys, isolated):
    """--json is one object with every section; versions are the installed distributions'."""
    code, out, err = run(capsys, "doctor", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert set(report) == {"ser", "python", "platform", "cpu", "packages", "libsndfile", "onnxruntime_providers",
                           "blas", "models", "whisper_encoder", "feature_cache", "speaker_profiles", "environment",
                           "problems"}
    assert report["ser"]["version"] == ser.__version__
    assert report["python"]["executable"] == sys.executable
    assert report["cpu"]["cores"] == os.cpu_count()
    assert isinstance(report["cpu"]["features"], list)
    int8 = any(f in report["cpu"]["features"] for f in ("AVX512-VNNI", "AVX-VNNI", "AMX-INT8", "NEON-DOTPROD", "I8MM"))
    assert report["cpu"]["int8_encoder"].startswith("runs int8: this CPU has" if int8 else "runs float32 (dequantized)")
    for key, names in doctor.PACKAGES.items():
        for name in names:
            try:
                expected = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                continue
            assert report["packages"][key] == (expected if name == names[0] else f"{expected} ({name})")
            break
        else:
            assert report["packages"][key] == "not installed"
    import onnxruntime
    import soundfile

    assert report["libsndfile"] == soundfile.__libsndfile_version__
    assert report["onnxruntime_providers"] == onnxruntime.get_available_providers()
    assert set(report["models"]) == set(modelfolder.bundled_models()) >= {"default", "fast"}
    for name, model in report["models"].items():
        folder = PRETRAINED / name
        assert model["ok"] and model["checksums"] == "ok"
        assert model["fingerprint"] == hashlib.sha256((folder / "SHA256SUMS").read_bytes()).hexdigest()[:12]
        assert model["config"]["name"] == json.loads((folder / "config.json").read_text())["name"]
        assert model["config"]["classes"] == json.loads((folder / "labels.json").read_text())
    assert report["environment"]["SER_CACHE_DIR"] == str(isolated / "no-cache")
    assert report["environment"]["OMP_NUM_THREADS"] == os.environ.get("OMP_NUM_THREADS")
    assert report["feature_cache"] == {"path": str(isolated / "no-cache"), "exists": False}
    assert report["problems"] == []


def test_text_is_aligned(capsys, isolated):
    """The default output: one label column, every value starting at the same place."""
    code, out, _ = run(capsys, "doctor")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("ser ") and ser.__version__ in lines[0]
    width = lines[0].index(ser.__version__)
    for line in lines:
        if len(line) > width:  # section headings ("packages", "models") have no value
            assert line[width - 2:width] == "  " and not line[width].isspace(), line
    labels = {line[:width].strip() for line in lines}
    assert {"ser", "python", "platform", "cpu", "cpu features", "int8 encoder", "packages", "numpy", "onnxruntime", "models",
            "default", "fast", "feature cache", "speaker profiles", "environment"} <= labels
    assert "  numpy".ljust(width) + importlib.metadata.version("numpy") in lines
    assert "problems" not in labels
    assert str(isolated / "no-cache") + ": not created yet" in out


def test_cache_size_and_profiles(capsys, monkeypatch, tmp_path):
    """The feature cache is walked (bytes of every file, entries = .npy files); profiles are counted."""
    cache = tmp_path / "cache"
    files = {"ab/ab12.npy": 10, "ab/ab34.npy": 300, "cd/cd56.npy": 4096, "cd/.cd78.npy.tmp": 7}
    for name, size in files.items():
        (cache / name).parent.mkdir(parents=True, exist_ok=True)
        (cache / name).write_bytes(b"x" * size)
    speakers = tmp_path / "speakers"
    speakers.mkdir()
    for name in ("alice.npz", "bob.npz", "notes.txt"):
        (speakers / name).write_bytes(b"not read")
    monkeypatch.setenv("SER_CACHE_DIR", str(cache))
    monkeypatch.setenv("SER_SPEAKERS_DIR", str(speakers))
    code, out, _ = run(capsys, "doctor", "--json")
    report = json.loads(out)
    assert code == 0
    assert report["feature_cache"] == {"path": str(cache), "exists": True, "bytes": sum(files.values()),
                                       "entries": 3}
    assert report["speaker_profiles"] == {"path": str(speakers), "exists": True, "profiles": 2}
    _, out, _ = run(capsys, "doctor")
    assert f"{cache}: 4.4 KB in 3 entries (4413 bytes)" in out
    assert f"{speakers}: 2 profiles" in out


def test_tampered_model_fails(capsys, monkeypatch, isolated, tampered):
    """A bundled model whose file changed is reported, by name, and the exit code is 1."""
    pretrained = isolated / "pretrained"
    pretrained.mkdir()
    tampered(PRETRAINED / "fast", "model.onnx").rename(pretrained / "fast")
    monkeypatch.setattr(modelfolder, "PRETRAINED_DIR", pretrained)
    code, out, err = run(capsys, "doctor", "--json")
    assert code == 1
    report = json.loads(out)
    assert list(report["models"]) == ["fast"]
    fast = report["models"]["fast"]
    assert not fast["ok"] and fast["checksums"].startswith("FAILED:") and "model.onnx" in fast["checksums"]
    assert any("'fast'" in p and "checksum mismatch" in p for p in report["problems"])
    assert "bundled model fast failed its checksums" in err
    code, out, _ = run(capsys, "doctor")
    assert code == 1
    assert "checksums FAILED:" in out and "problems" in out


def test_whisper_folder_large_files_hashed_only_with_full(capsys, monkeypatch, isolated):
    """Large encoder files are checked for presence only, unless --full; a failure there keeps exit code 0."""
    folder = isolated / "whisper"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"w" * 2000)
    (folder / "config.json").write_text("{}")
    sums = "".join(f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n" for n in ("model.bin",
                                                                                                  "config.json"))
    (folder / "SHA256SUMS").write_text(sums)
    monkeypatch.setenv("SER_WHISPER_DIR", str(folder))
    monkeypatch.setattr(doctor, "LARGE_FILE", 1000)

    def whisper(*argv):
        code, out, _ = run(capsys, "doctor", "--json", *argv)
        return code, json.loads(out)

    code, report = whisper()
    assert code == 0
    assert report["whisper_encoder"]["checksums"].startswith("ok (model.bin present, not hashed")
    assert report["whisper_encoder"]["fingerprint"] == sums[:12]
    assert whisper("--full")[1]["whisper_encoder"]["checksums"] == "ok"
    (folder / "model.bin").write_bytes(b"v" * 2000)
    assert whisper()[1]["whisper_encoder"]["checksums"].startswith("ok")  # the trade-off: not hashed
    code, report = whisper("--full")
    assert code == 0 and report["whisper_encoder"]["checksums"] == "FAILED: model.bin checksum mismatch"
    assert any("Whisper encoder" in p for p in report["problems"])
    (folder / "config.json").unlink()
    assert "config.json missing" in whisper()[1]["whisper_encoder"]["checksums"]
    monkeypatch.setenv("SER_WHISPER_DIR", str(isolated / "absent"))
    assert whisper()[1]["whisper_encoder"]["exists"] is False


def test_failed_probe_is_a_value(capsys, monkeypatch, isolated):
    """A library that cannot be imported, or a probe that raises, shows as "unavailable: ..."; no crash."""
    monkeypatch.setitem(sys.modules, "soundfile", None)  # import soundfile now raises ImportError

    def broken():
        raise OSError("disk on fire")

    monkeypatch.setattr(doctor, "_models", broken)
    code, out, _ = run(capsys, "doctor", "--json")
    report = json.loads(out)
    assert code == 0
    assert report["libsndfile"].startswith("unavailable: ModuleNotFoundError")
    assert report["models"] == "unavailable: OSError: disk on fire"
    assert "models: unavailable: OSError: disk on fire" in report["problems"]
    code, out, _ = run(capsys, "doctor")
    assert code == 0
    assert "unavailable: OSError: disk on fire" in out and "libsndfile" in out


def test_does_not_import_tensorflow(tmp_path):
    """A fresh process running ser doctor never imports TensorFlow, Keras or librosa (seconds each)."""
    code = ("import json, sys\n"
            "from ser.cli import main\n"
            "code = main(['doctor', '--json'])\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'librosa'})\n"
            "print(json.dumps({'code': code, 'heavy': heavy}), file=sys.stderr)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "SER_CACHE_DIR": str(tmp_path / "cache"), "SER_SPEAKERS_DIR": str(tmp_path / "speakers")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    result = json.loads(proc.stderr.strip().splitlines()[-1])
    assert result == {"code": 0, "heavy": []}
    json.loads(proc.stdout)  # and the report itself is one JSON object
