"""Tests for ser.dataset: RAVDESS names, folder indexing, manifests and summaries."""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import tone

from ser.dataset import (
    RAVDESS_COLUMNS,
    Clip,
    index_ravdess,
    load_dataset,
    parse_ravdess_name,
    read_manifest,
    summarize,
    write_manifest,
)
from ser.errors import ManifestError
from ser.labels import EMOTIONS


# --- file names ------------------------------------------------------------

def test_parse_ravdess_name_fields(tmp_path):
    """All seven fields are decoded: emotion, actor (speaker), gender, intensity, statement, repetition."""
    clip = parse_ravdess_name(tmp_path / "Actor_13" / "03-01-05-02-01-02-13.wav")
    assert clip is not None
    assert clip.label == "angry" and clip.speaker == "13"
    assert clip.meta == {"gender": "male", "intensity": "strong", "statement": 1, "repetition": 2}
    assert clip.path.is_absolute() and clip.path.name == "03-01-05-02-01-02-13.wav"


@pytest.mark.parametrize(("name", "label", "speaker", "gender", "intensity", "statement"), [
    ("03-01-01-01-01-01-01.wav", "neutral", "1", "male", "normal", 1),
    ("03-01-08-02-02-01-24.flac", "surprised", "24", "female", "strong", 2),
    ("03-01-04-01-02-02-12.mp3", "sad", "12", "female", "normal", 2),
    ("03-01-06-02-01-01-07.WAV", "fearful", "7", "male", "strong", 1),
])
def test_parse_ravdess_name_variants(name, label, speaker, gender, intensity, statement):
    """Odd actors are male, even female; leading zeros are dropped from the speaker; any extension."""
    clip = parse_ravdess_name(name)
    assert (clip.label, clip.speaker) == (label, speaker)
    assert (clip.meta["gender"], clip.meta["intensity"], clip.meta["statement"]) == (gender, intensity, statement)


@pytest.mark.parametrize("name", [
    "01-01-05-02-01-02-13.wav",  # audio-video
    "02-01-05-02-01-02-13.wav",  # video only
    "03-02-05-02-01-02-13.wav",  # song
    "noise.wav",
    "03-01-05-02-01-02.wav",  # six fields
    "03-01-05-02-01-02-13-extra.wav",
    "3-1-5-2-1-2-13.wav",
])
def test_parse_non_speech_or_foreign_names_return_none(name):
    """Names that are not RAVDESS audio-only speech are not clips (and not errors)."""
    assert parse_ravdess_name(name) is None


@pytest.mark.parametrize(("name", "pattern"), [
    ("03-01-09-01-01-01-01.wav", r"emotion code 09 is not 01-08"),
    ("03-01-00-01-01-01-01.wav", r"emotion code 00"),
    ("03-01-05-03-01-01-01.wav", r"malformed RAVDESS name"),
    ("03-01-05-01-03-01-01.wav", r"malformed RAVDESS name"),
    ("03-01-05-01-01-03-01.wav", r"malformed RAVDESS name"),
    ("03-01-05-01-01-01-25.wav", r"actor 25 is not 01-24"),
    ("03-01-05-01-01-01-00.wav", r"actor 00 is not 01-24"),
])
def test_parse_malformed_fields(name, pattern):
    """A RAVDESS-shaped name with an impossible field raises ManifestError naming the file."""
    with pytest.raises(ManifestError, match=re.escape(name) + ".*" + pattern):
        parse_ravdess_name(name)


# --- folder indexing -------------------------------------------------------

@pytest.fixture()
def mixed_corpus(tmp_path) -> Path:
    """Four RAVDESS clips (wav 16 kHz, flac 48 kHz, stereo wav, upper-case .WAV) plus files to skip."""
    root = tmp_path / "ravdess"
    (root / "Actor_01").mkdir(parents=True)
    (root / "Actor_02").mkdir()
    sf.write(root / "Actor_01" / "03-01-01-01-01-01-01.wav", tone("neutral"), 16000)
    sf.write(root / "Actor_01" / "03-01-05-02-01-02-01.WAV", tone("angry"), 16000)
    sf.write(root / "Actor_02" / "03-01-03-01-02-01-02.flac", tone("happy", sr=48000), 48000)
    stereo = np.stack([tone("sad"), tone("sad", seed=1)], axis=1)
    sf.write(root / "Actor_02" / "03-01-04-02-01-01-02.wav", stereo, 16000)
    (root / "README.txt").write_text("not audio")
    sf.write(root / "Actor_02" / "noise.wav", tone("calm"), 16000)  # not a RAVDESS name
    sf.write(root / "Actor_02" / "03-02-04-02-01-01-02.wav", tone("sad"), 16000)  # song
    return root


def test_index_ravdess_mixed_formats(mixed_corpus, caplog):
    """Mixed formats, rates and channel counts are all indexed; other files are skipped with a warning."""
    with caplog.at_level(logging.WARNING, logger="ser.dataset"):
        clips = index_ravdess(mixed_corpus)
    assert [(c.path.name, c.label, c.speaker) for c in clips] == [
        ("03-01-01-01-01-01-01.wav", "neutral", "1"),
        ("03-01-05-02-01-02-01.WAV", "angry", "1"),
        ("03-01-03-01-02-01-02.flac", "happy", "2"),
        ("03-01-04-02-01-01-02.wav", "sad", "2"),
    ]
    assert all(c.path.is_absolute() and c.path.is_file() for c in clips)
    assert "skipped 2 audio files" in caplog.text


def test_index_ravdess_errors(tmp_path):
    """A missing folder or one without RAVDESS clips raises ManifestError."""
    with pytest.raises(ManifestError, match=r"nowhere: not a folder"):
        index_ravdess(tmp_path / "nowhere")
    sf.write(tmp_path / "noise.wav", tone("calm"), 16000)
    with pytest.raises(ManifestError, match=r"no RAVDESS speech clips"):
        index_ravdess(tmp_path)


def test_manifest_round_trip(mixed_corpus, tmp_path):
    """write_manifest → read_manifest gives back the same clips (path, label, speaker, metadata)."""
    clips = index_ravdess(mixed_corpus)
    path = write_manifest(clips, tmp_path / "out" / "manifest.csv")
    assert path.read_text().splitlines()[0] == ",".join(RAVDESS_COLUMNS)
    back = read_manifest(path)
    assert back == sorted(clips, key=lambda c: str(c.path))
    for a, b in zip(sorted(clips, key=lambda c: str(c.path)), back):
        assert {k: str(v) for k, v in a.meta.items()} == b.meta
    assert load_dataset(path) == back
    assert load_dataset(mixed_corpus) == back


def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_generic_manifest_relative_paths(tmp_path, monkeypatch):
    """path,label,speaker with relative paths: resolved against the manifest folder, labels normalised."""
    data = tmp_path / "data"
    (data / "clips").mkdir(parents=True)
    for name in ("a.wav", "b.wav"):
        sf.write(data / "clips" / name, tone("happy"), 16000)
    absolute = tmp_path / "elsewhere.flac"
    sf.write(absolute, tone("sad"), 16000)
    manifest = write_csv(data / "list.csv", "Path,Label,Speaker\n"
                                            "clips/b.wav,Fear,spk2\n"
                                            f"{absolute},sadness,spk9\n"
                                            "clips/a.wav, happy ,spk1\n")
    monkeypatch.chdir(tmp_path.parent)  # relative paths must not depend on the working directory
    clips = read_manifest(manifest)
    assert clips == sorted([
        Clip(path=(data / "clips" / "a.wav").resolve(), label="happy", speaker="spk1"),
        Clip(path=(data / "clips" / "b.wav").resolve(), label="fearful", speaker="spk2"),
        Clip(path=absolute.resolve(), label="sad", speaker="spk9"),
    ], key=lambda c: str(c.path))


def test_generic_manifest_without_speaker(tmp_path):
    """Without a speaker column the speaker is empty; a BOM in the header is tolerated."""
    sf.write(tmp_path / "a.wav", tone("calm"), 16000)
    manifest = write_csv(tmp_path / "m.csv", "\ufeffpath,label\na.wav,calm\n")
    [clip] = read_manifest(manifest)
    assert (clip.label, clip.speaker) == ("calm", "")


def test_manifest_unknown_label_names_file_and_line(tmp_path):
    """An unknown emotion is reported as file:line (header = line 1)."""
    sf.write(tmp_path / "a.wav", tone("calm"), 16000)
    manifest = write_csv(tmp_path / "m.csv", "path,label\na.wav,calm\na.wav,bored\n")
    with pytest.raises(ManifestError, match=re.escape(f"{manifest}:3:") + r".*'bored': unknown emotion"):
        read_manifest(manifest)


def test_manifest_missing_audio_names_first_and_counts_rest(tmp_path):
    """Missing audio files: the first is named with its line, the others counted; check_files=False skips the check."""
    sf.write(tmp_path / "ok.wav", tone("calm"), 16000)
    manifest = write_csv(tmp_path / "m.csv", "path,label\nok.wav,calm\ngone1.wav,sad\ngone2.wav,sad\n"
                                             "gone3.wav,sad\n")
    pattern = re.escape(f"{manifest}:3: audio file not found: {tmp_path / 'gone1.wav'} (and 2 more)")
    with pytest.raises(ManifestError, match=pattern):
        read_manifest(manifest)
    assert len(read_manifest(manifest, check_files=False)) == 4


def test_manifest_single_missing_file_has_no_count(tmp_path):
    """With one missing file the message has no '(and N more)'."""
    manifest = write_csv(tmp_path / "m.csv", "path,label\ngone.wav,sad\n")
    with pytest.raises(ManifestError, match=r"gone\.wav$"):
        read_manifest(manifest)


def test_manifest_missing(tmp_path):
    """A missing manifest is a ManifestError naming it."""
    with pytest.raises(ManifestError, match=r"nope\.csv: manifest not found"):
        read_manifest(tmp_path / "nope.csv")
    with pytest.raises(ManifestError, match=r"nope\.csv: manifest not found"):
        load_dataset(tmp_path / "nope.csv")


@pytest.mark.parametrize(("text", "pattern"), [
    ("file,emotion\na.wav,calm\n", r"expected columns path and label \(or emotion\), found \['file', 'emotion'\]"),
    ("path,speaker\na.wav,1\n", r"expected columns path and label"),
    ("", r"m\.csv: empty manifest"),
    ("path,label\n", r"manifest has no rows"),
    ("path,label\n,calm\n", r"m\.csv:2: empty path"),
])
def test_manifest_structure_errors(tmp_path, text, pattern):
    """Missing columns, no rows and empty paths are refused with a clear message."""
    with pytest.raises(ManifestError, match=pattern):
        read_manifest(write_csv(tmp_path / "m.csv", text))


# --- summaries ---------------------------------------------------------------

def test_summarize_synthetic_corpus(corpus):
    """Counts per label and speaker, rates, channels and durations of the synthetic corpus."""
    clips = index_ravdess(corpus)
    s = summarize(clips)
    assert s["clips"] == 96
    assert s["labels"] == {e: 12 for e in sorted(EMOTIONS)}
    actors = sorted(int(d.name.removeprefix("Actor_")) for d in corpus.iterdir())  # the fixture's 6 actors
    assert len(actors) == 6
    assert list(s["speakers"].items()) == [(str(a), 16) for a in actors]  # numeric order, not "11" < "2"
    assert s["sample_rates"] == {16000: 96} and s["channels"] == {1: 96} and s["unreadable"] == 0
    assert s["duration_s"] == {"min": 1.2, "mean": 1.2, "max": 1.2, "total": 115.2}


def test_summarize_without_audio_and_unreadable(tmp_path):
    """with_audio=False skips file access; unreadable files are counted, not fatal."""
    clips = [Clip(path=tmp_path / "x.wav", label="sad", speaker=""), Clip(path=tmp_path / "y.wav", label="sad")]
    s = summarize(clips, with_audio=False)
    assert s == {"clips": 2, "labels": {"sad": 2}, "speakers": {"?": 2}}
    assert summarize(clips)["unreadable"] == 2


def test_real_ravdess(ravdess):
    """Shared RAVDESS: 1440 clips, 24 actors x 60, 96 neutral / 192 per other emotion, 16 kHz, 5 stereo."""
    clips = index_ravdess(ravdess)
    assert len(clips) == 1440
    speakers = Counter(c.speaker for c in clips)
    assert sorted(speakers, key=int) == [str(i) for i in range(1, 25)]
    assert set(speakers.values()) == {60}
    labels = Counter(c.label for c in clips)
    assert labels == {e: (96 if e == "neutral" else 192) for e in EMOTIONS}
    assert Counter(c.meta["gender"] for c in clips) == {"male": 720, "female": 720}
    s = summarize(clips)
    assert s["sample_rates"] == {16000: 1440} and s["channels"] == {1: 1435, 2: 5} and s["unreadable"] == 0


# --- duplicates and odd manifest content --------------------------------------

def one_line_error(fn, *args, **kwargs) -> str:
    """The message of the ManifestError ``fn`` raises, checked to be a single line."""
    with pytest.raises(ManifestError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    return message


def test_manifest_same_file_three_times_conflicting_labels(tmp_path):
    """One file listed three ways (relative, ./relative, absolute) with three labels: refused, naming the lines."""
    sf.write(tmp_path / "a.wav", tone("calm"), 16000)
    sf.write(tmp_path / "b.wav", tone("sad"), 16000)
    manifest = write_csv(tmp_path / "m.csv", f"path,label\na.wav,calm\nb.wav,sad\n./a.wav,sad\n{tmp_path / 'a.wav'},"
                                             "angry\n")
    for labels in (True, False):  # without labels the rows are still the same file twice
        message = one_line_error(read_manifest, manifest, labels=labels)
        assert message.startswith(f"{manifest}: {(tmp_path / 'a.wav').resolve()} is listed 3 times (lines 2, 4, 5)")
    assert "different labels (calm, sad, angry)" in one_line_error(read_manifest, manifest)


def test_manifest_same_file_conflicting_speakers(tmp_path):
    """Same label, different speakers: refused (the speaker decides the fold)."""
    sf.write(tmp_path / "a.wav", tone("calm"), 16000)
    manifest = write_csv(tmp_path / "m.csv", "path,label,speaker\na.wav,calm,s1\na.wav,calm,s2\n")
    message = one_line_error(read_manifest, manifest, check_files=False)
    assert re.search(r"listed 2 times \(lines 2, 3\) with different speakers \(s1, s2\)", message)


def test_manifest_exact_duplicate_rows_are_refused(tmp_path):
    """Identical rows are refused too: a repeated clip would sit in a training and a test fold at once."""
    sf.write(tmp_path / "a.wav", tone("calm"), 16000)
    manifest = write_csv(tmp_path / "m.csv", "path,label\na.wav,calm\n\na.wav,calm\n")
    message = one_line_error(read_manifest, manifest)
    assert re.search(r"m\.csv: .*a\.wav is listed 2 times \(lines 2, 4\) with the same label and speaker", message)


def test_manifest_duplicate_through_symlink(tmp_path):
    """A symbolic link to a listed file is the same file (paths are compared resolved)."""
    sf.write(tmp_path / "a.wav", tone("calm"), 16000)
    (tmp_path / "link.wav").symlink_to(tmp_path / "a.wav")
    manifest = write_csv(tmp_path / "m.csv", "path,label\nlink.wav,sad\na.wav,calm\n")
    assert "listed 2 times (lines 2, 3)" in one_line_error(read_manifest, manifest)


def test_load_datasets_same_file_in_two_manifests(tmp_path):
    """Two manifests in different folders reaching one file: refused naming both manifests and their lines."""
    from ser.dataset import load_datasets

    (tmp_path / "a").mkdir()
    sf.write(tmp_path / "a" / "clip.wav", tone("calm"), 16000)
    first = write_csv(tmp_path / "a" / "m.csv", "path,label\nclip.wav,calm\n")
    second = write_csv(tmp_path / "b" / "m.csv", "path,label,speaker\n../a/clip.wav,angry,x\n")
    message = one_line_error(load_datasets, [first, second])
    assert message.startswith(f"{second}:2: {(tmp_path / 'a' / 'clip.wav').resolve()} is also in {first}:2 ")
    assert "labelled calm there, angry here" in message
    assert "given twice" in one_line_error(load_datasets, [first, tmp_path / "a" / ".." / "a" / "m.csv"])


def test_manifest_line_endings_bom_and_blank_lines(tmp_path):
    """BOM + CRLF, CR only and blank lines all read; errors after blank lines still name the right line."""
    sf.write(tmp_path / "a.wav", tone("calm"), 16000)
    sf.write(tmp_path / "b.wav", tone("sad"), 16000)
    for text in ("\ufeffpath,label\r\na.wav,calm\r\nb.wav,sad\r\n", "path,label\ra.wav,calm\rb.wav,sad",
                 "\n\npath,label\n\na.wav,calm\n,,\n\nb.wav,sad,\n"):
        clips = read_manifest(write_csv(tmp_path / "m.csv", text))
        assert [(c.path.name, c.label) for c in clips] == [("a.wav", "calm"), ("b.wav", "sad")]
    manifest = write_csv(tmp_path / "m.csv", "path,label\r\n\r\na.wav,calm\r\n\r\nb.wav,bored\r\n")
    assert one_line_error(read_manifest, manifest).startswith(f"{manifest}:5: label='bored'")


def test_manifest_odd_bytes(tmp_path):
    """Non-UTF-8 bytes, UTF-16 (with and without BOM) and NUL bytes: refused naming the line."""
    cases = [
        (b"path,label\na.wav,calm\n\xff\xfe.wav,sad\n", r":3: not UTF-8 text \(byte 0xff\)"),
        ("path,label\na.wav,calm\n".encode("utf-16"), r":1: not UTF-8 text \(byte 0xff\)"),
        ("path,label\na.wav,calm\n".encode("utf-16-le"), r":1: NUL byte"),
        (b"path,label\na.wav,calm\na\x00.wav,sad\n", r":3: NUL byte"),
        (b"\xef\xbb\xbfpath,label\n\xef\xbb\xbf\xc3(,calm\n", r":2: not UTF-8 text \(byte 0xc3\)"),
    ]
    for data, pattern in cases:
        manifest = tmp_path / "m.csv"
        manifest.write_bytes(data)
        for labels in (True, False):
            assert re.search(re.escape(str(manifest)) + pattern, one_line_error(read_manifest, manifest,
                                                                                labels=labels)), data


@pytest.mark.parametrize(("text", "pattern"), [
    ("path;label\na.wav;calm\n", r"m\.csv:1: expected columns path and label \(or emotion\), found \['path;label'\];"
                                 r" the header has no comma \(is ';' the delimiter\? manifests are comma-separated\)"),
    ("path\tlabel\na.wav\tcalm\n", r"m\.csv:1: expected columns .*is '\\t' the delimiter"),
    ("\n\n", r"m\.csv: empty manifest \(expected a header line: path,label\[,speaker\]\)"),
    ("path,label,Label\na.wav,calm,sad\n", r"m\.csv:1: column 'label' appears 2 times in the header"),
    ("path,label\na.wav,calm,sad\n", r"m\.csv:2: 3 fields, but the header has 2 \(quote values that hold commas\)"),
    ('path,label\n"a.wav,calm\nb.wav,sad\n',
     r"m\.csv:2: malformed CSV \(unexpected end of data: an unbalanced quote\?\)"),
    ('path,label\n"a\n.wav",calm\n', r"m\.csv:2: line break inside a quoted field \(an unbalanced quote\?\)"),
    ('path,label\n"a.wav" ,calm\n', r"m\.csv:2: malformed CSV \(',' expected after '\"'\)"),
    ("path,label\na.wav,calm\n" + "x" * 200_000 + ",calm\n",
     r"m\.csv:3: malformed CSV \(field larger than field limit"),
    ("path,label\n" + "d/" * 3000 + "a.wav,calm\n", r"m\.csv:2: cannot use path '(d/)+.*…' \(File name too long\)"),
    ("path,label\na.wav," + "x" * 5000 + "\n", r"m\.csv:2: label='x+…': unknown emotion"),
    ("path,label\n\n \n", r"m\.csv: manifest has no rows"),
])
def test_manifest_odd_content(tmp_path, text, pattern):
    """Wrong delimiter, blank file, repeated columns, extra fields, open quotes, huge fields: one line each."""
    sf.write(tmp_path / "a.wav", tone("calm"), 16000)
    manifest = write_csv(tmp_path / "m.csv", text)
    assert re.search(pattern, one_line_error(read_manifest, manifest))


def test_manifest_path_is_a_symlink_loop_or_folder(tmp_path):
    """A listed symbolic link loop names the line; a manifest that is a folder or a loop is refused."""
    (tmp_path / "loop.wav").symlink_to(tmp_path / "loop.wav")
    manifest = write_csv(tmp_path / "m.csv", "path,label\nloop.wav,calm\n")
    for check_files in (True, False):
        message = one_line_error(read_manifest, manifest, check_files=check_files)
        assert message == f"{manifest}:2: cannot use path 'loop.wav' (symbolic link loop)"
    assert one_line_error(read_manifest, tmp_path) == f"{tmp_path}: is a folder, not a manifest CSV"
    (tmp_path / "loop.csv").symlink_to(tmp_path / "loop.csv")
    assert one_line_error(read_manifest, tmp_path / "loop.csv").startswith(f"{tmp_path / 'loop.csv'}: cannot read")


def test_write_manifest_refuses_values_it_cannot_write_back(tmp_path):
    """Line breaks, NUL and surrounding spaces would not read back as written: refused, naming the clip."""
    for clip in (Clip(path=tmp_path / "a\nb.wav", label="calm"), Clip(path=tmp_path / "a.wav ", label="calm"),
                 Clip(path=tmp_path / "a.wav", label="calm", speaker="s\r1"),
                 Clip(path=tmp_path / "a.wav", label="calm", meta={"gender": "x\x00"})):
        assert "cannot be written to a manifest" in one_line_error(write_manifest, [clip], tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()
