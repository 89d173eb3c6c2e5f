"""Property-based test of the command line: random arguments end in an exit code, never a traceback.

Each example runs ``ser.cli.main`` in-process on a random argument list drawn from the real
subcommands, options and a pool of good, bad and odd values, inside a scratch folder. The
outcome must be exit code 0, 1 (a one-line ``error:``) or 2 (usage), and any results printed
must be valid (no NaN in JSON).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given
from hypothesis import strategies as st

import ser.inference as inference
import ser.modelfolder as modelfolder
from ser.cli import main
from ser.errors import SERError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

COMMANDS = [["predict"], ["speakers", "list"], ["speakers", "remove"], ["speakers", "enrol"], ["data", "index"],
            ["data", "summary"], ["config"], ["export"], ["evaluate"], ["train"], ["grid"], ["doctor"]]
OPTIONS = ["--model", "--json", "--csv", "--batch-size", "--jobs", "--runtime", "--timeline", "--out", "--output",
           "-o", "--resume", "--force", "--speaker", "--adapt", "--speakers-dir", "--config", "--set", "--data",
           "--protocol", "--folds", "--inner-folds", "--grid", "--format", "--corpus", "--cache", "--no-cache",
           "-q", "-v", "--version", "--help", "--full", "--"]
# No "/" or "..": a folder given to predict or data index is searched recursively (the whole disk).
VALUES = ["fast", "clip.wav", "clip.flac", "noise.wav", "silent.wav", "text.wav", "empty.wav", "missing.wav",
          "-", "0", "-3", "1", "2", "1e9", "nan", "", " ", "../x", ".", "sub", "results.jsonl",
          "results.csv", "x.json", "manifest.csv", "onnx", "keras", "auto", "si6", "seed-split",
          "group-kfold", "tiny", "train.epochs=0", "train.epochs=abc", "bogus.field=1", "anna", "../anna",
          "é☃", "a" * 300, "*.wav", "**/*.flac", "\x00"]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-props")
    shutil.copy(EXAMPLES / "03-01-03-02-01-02-13.flac", d / "clip.flac")
    y, sr = sf.read(d / "clip.flac")
    sf.write(d / "clip.wav", y, sr)
    sf.write(d / "noise.wav", np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1, 16000)
    sf.write(d / "silent.wav", np.zeros(16000, np.float32), 16000)
    (d / "text.wav").write_text("not audio")
    (d / "empty.wav").write_bytes(b"")
    (d / "manifest.csv").write_text("path,label\nclip.wav,happy\nclip.flac,happy\n")
    (d / "x.json").write_text("{\"name\": 3}")
    (d / "sub").mkdir()
    return d


@given(command=st.sampled_from(COMMANDS),
       rest=st.lists(st.one_of(st.sampled_from(OPTIONS), st.sampled_from(VALUES), st.text(max_size=8)),
                     max_size=6))
def test_random_arguments_end_in_an_exit_code(scratch, monkeypatch, command, rest):
    argv = [*command, *rest]
    # Prediction is what is tested here, not the default model's 0.3 s load per example.
    monkeypatch.setattr(modelfolder, "DEFAULT_MODEL", modelfolder.PRETRAINED_DIR / "fast")
    monkeypatch.setattr(inference.Recognizer, "load", _cached_load)
    monkeypatch.chdir(scratch)
    monkeypatch.setenv("SER_SPEAKERS_DIR", str(scratch / "speakers"))
    monkeypatch.setenv("SER_CACHE_DIR", str(scratch / "cache"))
    if "download" in argv or ("train" in argv and "--data" in argv) or "evaluate" in argv or "grid" in argv:
        # Real training or downloading is out of scope for thousands of examples: keep parse errors only.
        argv = [a for a in argv if a != "--data"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
            code = exc.code
        except (SERError, OSError):
            # -v re-raises a handled error (a SERError, or an OSError such as a file name too long), for its traceback
            assert "-v" in argv or "--verbose" in argv
            code = 1
    assert code in (0, 1, 2, 141), (argv, code, err.getvalue())
    assert "Traceback" not in err.getvalue(), (argv, err.getvalue())
    if code == 1 and "-v" not in argv and "--verbose" not in argv:
        assert any(line.startswith("error: ") for line in err.getvalue().splitlines()), (argv, err.getvalue())
    for line in out.getvalue().splitlines():
        if line.startswith("{\"source\""):  # a result of predict --json
            json.loads(line, parse_constant=_refuse_nan)  # NaN/Infinity never printed
        elif "," in line:  # a CSV row: no score may be nan or inf
            assert not {f.strip().lower() for f in line.split(",")[1:]} & {"nan", "inf", "-inf"}, line


@functools.lru_cache(maxsize=8)
def _load(path, runtime):
    return _REAL_LOAD(path, runtime=runtime)


_REAL_LOAD = inference.Recognizer.load


def _cached_load(path=None, *, runtime="auto"):
    return _load(modelfolder.resolve_model(path), runtime)


def _refuse_nan(token: str):
    raise AssertionError(f"non-finite number {token} in JSON output")
