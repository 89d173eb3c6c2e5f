"""Damaged model folders: every malformed file ends the load in one clear line, never a traceback.

The regression tests name each damage seen so far (random bytes, malformed
checksum lines, JSON of the wrong shape, unreadable arrays and graphs); the
property tests throw random and mutated contents at each small file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ser.errors import ModelError, SERError
from ser.inference import PRETRAINED_DIR, Recognizer, write_checksums

FAST = PRETRAINED_DIR / "fast"
DEFAULT = PRETRAINED_DIR / "default"
DIGEST = "ab" * 32
#: Bytes that are neither UTF-8 nor JSON nor an archive (a stray 0xff decodes as nothing).
JUNK = bytes(range(256))[::-1] * 4


@pytest.fixture()
def fast(tmp_path) -> Path:
    """A private copy of the bundled fast model (about 1 MB)."""
    return Path(shutil.copytree(FAST, tmp_path / "fast"))


@pytest.fixture()
def adapted(fast) -> Path:
    """The fast copy with a speaker-adapted head: default's speaker statistics, fast's own network as the head.

    Mismatched on purpose (the load does not run the head); it keeps the folder small.
    """
    shutil.copyfile(DEFAULT / "speakers.npz", fast / "speakers.npz")
    shutil.copyfile(fast / "model.keras", fast / "adapted.keras")
    shutil.copyfile(fast / "model.onnx", fast / "adapted.onnx")
    write_checksums(fast)
    return fast


def refused(folder: Path, match: str, **kwargs) -> ModelError:
    """The one-line ModelError that loading ``folder`` raises; its message matches ``match``."""
    with pytest.raises(ModelError, match=match) as info:
        Recognizer.load(folder, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    return info.value


def replace(folder: Path, name: str, data: bytes, *, resum: bool = True) -> Path:
    """Write ``data`` as ``folder/name``; with ``resum``, redo SHA256SUMS so the checksums pass."""
    (folder / name).write_bytes(data)
    if resum:
        write_checksums(folder)
    return folder


# --- 1. SHA256SUMS -------------------------------------------------------

def test_sums_of_random_bytes_are_refused(fast):
    """Bytes that are not UTF-8 text name the file, not a UnicodeDecodeError."""
    refused(replace(fast, "SHA256SUMS", JUNK, resum=False), r"SHA256SUMS: not UTF-8 text")


def _sums_with(folder: Path, line: str, *, where: int = 1) -> Path:
    lines = (folder / "SHA256SUMS").read_text().splitlines()
    lines.insert(where, line)
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize("line, problem", [
    ("config.json", "expected '<64 hex digits>  <file name>'"),
    (f"{DIGEST[:-1]}  history.json", "expected '<64 hex digits>  <file name>'"),
    (f"{DIGEST[:-1]}g  history.json", "expected '<64 hex digits>  <file name>'"),
    (f"{DIGEST}  ", "expected '<64 hex digits>  <file name>'"),
    (f"{DIGEST}history.json", "expected '<64 hex digits>  <file name>'"),
    (f"{DIGEST}  sub/history.json", "not a plain file name"),
    (f"{DIGEST}  ../history.json", "not a plain file name"),
    (f"{DIGEST}  ..", "not a plain file name"),
    (f"{DIGEST}  .", "not a plain file name"),
    (f"{DIGEST}  /etc/passwd", "not a plain file name"),
    (f"{DIGEST}  a\\b", "not a plain file name"),
    (f"{DIGEST}  bad\x01name", "not a plain file name"),
    (f"{DIGEST}  SHA256SUMS", "lists itself"),
    (f"{DIGEST}  README.md", "README.md listed twice"),
    ("", "empty line"),
    ("   ", "empty line"),
])
def test_malformed_sums_lines_are_refused(fast, line, problem):
    """Each malformed line gives one ModelError naming SHA256SUMS and the line's number."""
    err = refused(_sums_with(fast, line), r"SHA256SUMS: line 2: ")
    assert problem in str(err)


def test_empty_sums_file_is_refused(fast):
    """An empty SHA256SUMS lists nothing to verify."""
    refused(replace(fast, "SHA256SUMS", b"", resum=False), r"SHA256SUMS: empty; not a ser model folder")


def test_sums_tolerate_crlf_and_binary_marker(fast):
    """Windows line ends and sha256sum's binary-mode marker (' *name') are the same listing."""
    lines = (fast / "SHA256SUMS").read_text().splitlines()
    text = "\r\n".join(line.replace("  ", " *", 1) if i % 2 else line for i, line in enumerate(lines))
    (fast / "SHA256SUMS").write_text(text + "\r\n")
    assert Recognizer.load(fast).classes == Recognizer.load(FAST).classes


# --- 2. JSON files (checksums redone so that they pass) ---------------------

@pytest.mark.parametrize("name, data, match", [
    ("labels.json", JUNK, r"labels.json: not UTF-8 text"),
    ("labels.json", b'["neutral", "calm"', r"labels.json: not valid JSON"),
    ("labels.json", b'{"neutral": 1}', r"labels.json: expected a JSON list of class names"),
    ("labels.json", b'[1, 2, 3]', r"labels.json: expected a JSON list of class names"),
    ("labels.json", b'"neutral"', r"labels.json: expected a JSON list of class names"),
    ("labels.json", b'["neutral", "calm"]', r"labels.json: classes \['neutral', 'calm'\] differ from config"),
    ("labels.json", b"[" * 100_000, r"labels.json: not valid JSON"),
    ("metrics.json", JUNK, r"metrics.json: not UTF-8 text"),
    ("metrics.json", b'{"training": ', r"metrics.json: not valid JSON"),
    ("metrics.json", b'[1, 2]', r"metrics.json: expected a JSON object"),
    ("metrics.json", b'1' * 5000, r"metrics.json: not valid JSON"),
    ("config.json", JUNK, r"config.json: .*not UTF-8 text"),
    ("config.json", b'{"name": ', r"config.json: .*not a readable JSON config"),
    ("config.json", b'[]', r"config.json: .*expected a JSON object"),
    ("config.json", b'{"audio": {"duration": "3"}}', r"config.json: .*audio.duration='3': expected a number"),
    ("config.json", b'{"audio": {"duration": 1' + b"0" * 400 + b'}}', r"config.json: .*audio.duration=.*"),
    ("config.json", b'{"audio": {"sample_rate": 1' + b"0" * 400 + b'}}', r"config.json: .*audio.sample_rate="),
    ("config.json", b'{"train": {"epochs": 1' + b"0" * 5000 + b'}}', r"config.json: .*not a readable JSON"),
    ("config.json", b'{"a": ' * 100_000, r"config.json: .*not a readable JSON config"),
])
def test_malformed_json_files_are_refused(fast, name, data, match):
    """Random bytes, broken JSON and JSON of the wrong shape: one ModelError naming the file, at load time."""
    refused(replace(fast, name, data), match)


# --- binary files (checksums redone so that they pass) ---------------------

@pytest.mark.parametrize("name, match", [
    ("model.onnx", r"model.onnx: cannot load ONNX model"),
    ("encoder.npz", r"encoder.npz: not a readable encoder export"),
    ("speakers.npz", r"speakers.npz: not a readable speaker-norm file"),
])
def test_random_binary_files_are_refused(fast, name, match):
    """An unreadable graph or array archive is refused when the folder loads."""
    refused(replace(fast, name, JUNK * 64), match)


def test_unreadable_keras_file_is_refused_at_load_time(fast):
    """model.keras is read lazily when ONNX Runtime runs the model; a file that is no archive is refused at once."""
    replace(fast, "model.keras", JUNK)
    refused(fast, r"model.keras: not a Keras archive")
    refused(fast, r"model.keras: not a Keras archive", runtime="keras")


@pytest.mark.parametrize("name, runtime, match", [
    ("adapted.onnx", "auto", r"adapted.onnx: cannot load ONNX model"),
    ("adapted.keras", "auto", r"adapted.keras: not a Keras archive"),
    ("adapted.keras", "keras", r"adapted.keras: not a Keras archive"),
])
def test_unreadable_adapted_head_is_refused_at_load_time(adapted, name, runtime, match):
    """The adapted head loads on first use, but a damaged one is refused with the folder."""
    refused(replace(adapted, name, JUNK * 64), match, runtime=runtime)


def test_adapted_folder_loads(adapted):
    """The fixture itself is a loadable folder (the refusals above are the damage, not the set-up)."""
    rec = Recognizer.load(adapted)
    assert rec.speaker_norm is not None and rec.runner is not None


@pytest.mark.parametrize("name", ["model.onnx", "metrics.json", "speakers.npz", "adapted.onnx", "adapted.keras"])
def test_files_used_must_be_listed(adapted, name):
    """A file the load would use but SHA256SUMS does not list is refused, not used unverified."""
    sums = adapted / "SHA256SUMS"
    sums.write_text("".join(line + "\n" for line in sums.read_text().splitlines() if not line.endswith(name)))
    refused(adapted, rf"{name}: not listed in SHA256SUMS")


def test_unused_unlisted_files_are_ignored(fast):
    """Files the load never reads (notes, an ONNX graph under runtime='keras') need no checksum."""
    (fast / "NOTES.txt").write_text("mine\n")
    Recognizer.load(fast)
    sums = fast / "SHA256SUMS"
    sums.write_text("".join(line + "\n" for line in sums.read_text().splitlines() if "model.onnx" not in line))
    assert Recognizer.load(fast, runtime="keras").runner is None


def test_model_error_is_a_ser_error():
    """Callers catching SERError catch every refusal above."""
    assert issubclass(ModelError, SERError)
