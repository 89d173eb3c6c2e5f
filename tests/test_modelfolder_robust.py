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
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ser.config import Config
from ser.errors import ModelError, SERError
from ser.inference import Recognizer
from ser.modelfolder import (CHECKSUMS, PRETRAINED_DIR, _read_config, _read_labels, _read_metrics, verify_checksums,
                             write_checksums)

FAST = PRETRAINED_DIR / "fast"
DEFAULT = PRETRAINED_DIR / "default"
DIGEST = "ab" * 32
#: Bytes that are neither UTF-8 nor JSON nor an archive (a stray 0xff decodes as nothing).
JUNK = bytes(range(256))[::-1] * 4


@pytest.fixture()
def fast(tmp_path, trained) -> Path:
    """A private copy of a small trained model folder (Keras and ONNX networks, like `ser train` writes)."""
    return Path(shutil.copytree(trained, tmp_path / "fast"))


@pytest.fixture()
def adapted(fast) -> Path:
    """The fast copy with a speaker-adapted head: fast's own network as the head, default's speaker statistics.

    The statistics are for other features (the load does not apply them); borrowing
    the small files keeps the folder at about 1.5 MB instead of default's 60 MB.
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


def test_sums_with_flipped_bytes_are_refused(tampered):
    """Four bytes flipped inside a digest make the listing undecodable: named, not a traceback."""
    refused(tampered(FAST, "SHA256SUMS"), r"SHA256SUMS: not UTF-8 text \(byte \d+ is 0x")


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


def test_speaker_statistics_without_a_head_are_refused(adapted):
    """speakers.npz comes with an adapted head; without one the load fails now, not at the first speaker."""
    for name in ("adapted.keras", "adapted.onnx"):
        (adapted / name).unlink()
    write_checksums(adapted)
    refused(adapted, r"adapted.keras: missing; speakers.npz comes with the adapted head")


@pytest.mark.parametrize("runtime", ["auto", "keras"])
def test_network_must_fit_the_config(fast, runtime):
    """A config.json whose features or classes do not fit the network is refused (checksums redone)."""
    config = json.loads((fast / "config.json").read_text())
    network = "model.onnx" if runtime == "auto" else "model.keras"
    key = "n_mels" if config["features"]["kind"] == "logmel" else "n_mfcc"
    n_mfcc = config["features"][key]
    config["features"][key] = n_mfcc - 2
    replace(fast, "config.json", json.dumps(config).encode())
    refused(fast, rf"{network}: takes features of shape \({n_mfcc}, (\d+)\), but config.json gives "
                  rf"\({n_mfcc - 2}, \1\)", runtime=runtime)
    config["features"][key] = n_mfcc
    config["classes"] = config["classes"][:-1]
    replace(fast, "config.json", json.dumps(config).encode())
    replace(fast, "labels.json", json.dumps(config["classes"]).encode())
    refused(fast, rf"{network}: outputs 8 classes, but labels.json has 7", runtime=runtime)


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


# --- 3. properties: random and mutated contents ------------------------------

SMALL_FILES = ("SHA256SUMS", "labels.json", "metrics.json", "config.json")
#: Whole loads per example cost about 10 ms (the fast model on ONNX Runtime, plus redoing
#: the checksums of its 1 MB), and the validators below already take the profile's
#: 2000 examples per file: 50 whole loads per file check that the validators are the
#: ones the load uses, at about a second each.
LOADS = settings(max_examples=min(50, settings.default.max_examples))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)


def mutations(real: bytes) -> st.SearchStrategy[bytes]:
    """``real`` with one byte replaced, inserted or deleted."""
    def apply(edit: tuple[str, int, int]) -> bytes:
        kind, i, byte = edit
        i %= len(real)
        tail = real[i + 1:] if kind in ("replace", "delete") else real[i:]
        return real[:i] + (b"" if kind == "delete" else bytes([byte])) + tail

    return st.tuples(st.sampled_from(["replace", "insert", "delete"]), st.integers(0, 1 << 20),
                     st.integers(0, 255)).map(apply)


def leaf_swaps(real: bytes) -> st.SearchStrategy[bytes]:
    """``real`` (a JSON object) with one value anywhere in it replaced by random JSON."""
    data = json.loads(real)
    paths = []

    def walk(node, path):
        paths.append(path)
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*path, key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, (*path, i))

    walk(data, ())

    def apply(swap) -> bytes:
        path, value = swap
        if not path:
            return json.dumps(value).encode()
        copy = json.loads(real)
        node = copy
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return json.dumps(copy).encode()

    return st.tuples(st.sampled_from(paths), json_values).map(apply)


def contents(name: str) -> st.SearchStrategy[bytes]:
    """Random bytes, random text, random JSON, and one-byte mutations of the real files called ``name``."""
    reals = [(folder / name).read_bytes() for folder in (FAST, DEFAULT)]
    kinds = [st.binary(max_size=300), st.text(max_size=200).map(str.encode),
             json_values.map(lambda v: json.dumps(v).encode()), st.sampled_from(reals).flatmap(mutations)]
    if name.endswith(".json"):
        kinds.append(st.sampled_from(reals).flatmap(leaf_swaps))
    return st.one_of(kinds)


def sums_listings() -> st.SearchStrategy[bytes]:
    """SHA256SUMS-like text: real lines, real lines mutated, and made-up ``digest  name`` lines."""
    real = (FAST / CHECKSUMS).read_text().splitlines()
    names = st.sampled_from([line[66:] for line in real]) | st.text(max_size=12)
    digests = st.sampled_from([line[:64] for line in real]) | st.text("0123456789abcdefABCDEF", max_size=66)
    made_up = st.tuples(digests, st.sampled_from(["  ", " *", " ", "   ", "\t"]), names).map("".join)
    any_line = st.sampled_from(real) | made_up | st.text(max_size=80)
    # The real listing in any order with one line added, replaced or dropped: often still valid.
    edited = st.tuples(st.permutations(real), st.integers(0, len(real)), st.sampled_from(["add", "replace", "drop"]),
                       any_line).map(_edit_lines)
    lines = st.lists(any_line, max_size=12) | edited
    ends = st.sampled_from(["\n", "\r\n"])
    return st.tuples(lines, ends).map(lambda t: (t[1].join(t[0]) + t[1]).encode()) | contents(CHECKSUMS)


def _edit_lines(edit: tuple[list[str], int, str, str]) -> list[str]:
    lines, i, kind, line = edit
    if kind == "add":
        return [*lines[:i], line, *lines[i:]]
    return [*lines[:i], *([line] if kind == "replace" else []), *lines[i + 1:]]


def outcome(call, *args, **kwargs):
    """``call(*args)``'s result, or its ModelError, which must be one line; anything else fails the test."""
    try:
        return call(*args, **kwargs)
    except ModelError as exc:
        assert str(exc) and "\n" not in str(exc) and "\r" not in str(exc), repr(str(exc))
        return exc


@given(data=sums_listings())
def test_any_sums_file_verifies_or_is_refused(fast, data):
    """verify_checksums on any SHA256SUMS: the verified listing of plain files, or one ModelError line."""
    (fast / CHECKSUMS).write_bytes(data)
    listed = outcome(verify_checksums, fast)
    event(type(listed).__name__)
    if not isinstance(listed, ModelError):
        assert {"config.json", "labels.json"} <= set(listed) and {"model.keras", "model.onnx"} & set(listed)
        assert all((fast / name).is_file() and (fast / name).parent == fast for name in listed)


@given(data=contents("labels.json"))
def test_any_labels_file_reads_or_is_refused(tmp_path, data):
    """_read_labels on any bytes: a list of strings, or one ModelError line."""
    (tmp_path / "labels.json").write_bytes(data)
    labels = outcome(_read_labels, tmp_path)
    assert isinstance(labels, ModelError) or all(isinstance(label, str) for label in labels)


@given(data=contents("metrics.json"))
def test_any_metrics_file_reads_or_is_refused(tmp_path, data):
    """_read_metrics on any bytes: a dict, or one ModelError line."""
    (tmp_path / "metrics.json").write_bytes(data)
    assert isinstance(outcome(_read_metrics, tmp_path), (dict, ModelError))


@given(data=contents("config.json"))
def test_any_config_file_reads_or_is_refused(tmp_path, data):
    """_read_config on any bytes: a validated Config, or one ModelError line naming config.json."""
    (tmp_path / "config.json").write_bytes(data)
    config = outcome(_read_config, tmp_path)
    assert isinstance(config, Config) or "config.json: " in str(config)


@pytest.mark.parametrize("name", SMALL_FILES)
def test_any_small_file_loads_or_is_refused(fast, name):
    """Whole loads of the fast model with one small file replaced (checksums redone but for SHA256SUMS itself)."""
    strategy = sums_listings() if name == CHECKSUMS else contents(name)

    @LOADS
    @given(data=strategy)
    def check(data):
        (fast / name).write_bytes(data)
        if name != CHECKSUMS:
            write_checksums(fast)
        result = outcome(Recognizer.load, fast)
        assert isinstance(result, (Recognizer, ModelError))

    check()
