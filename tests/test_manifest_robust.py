"""Property tests of the manifest readers: whatever a CSV holds, clips or one line of error, never a traceback.

Random text and bytes (random columns, rows, labels, paths, speakers, delimiters, line ends,
quoting and encodings) go through :func:`ser.dataset.read_manifest` (with and without labels
and file checks) and :func:`ser.dataset.load_datasets`; each example must end in a list of
clips that keeps the readers' promises, or in one :class:`ser.errors.SERError` whose message
is a single line naming the manifest. :func:`ser.dataset.write_manifest` then
:func:`ser.dataset.read_manifest` must give the same clips back (or refuse to write).

The paths are drawn mostly from a small folder of real files, links, a link loop, a
folder named like audio and missing names, so that duplicates (``a.wav`` / ``./a.wav`` /
``link.wav``), missing files and unusable paths come up often, not once in a million.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ser.dataset import Clip, load_datasets, read_manifest, write_manifest
from ser.errors import ManifestError, SERError
from ser.labels import EMOTIONS

ALIASES = ["fear", "Anger", " joy ", "SADNESS", "surprise", "disgusted"]
COLUMNS = ["path", "label", "emotion", "speaker", "actor", "gender", "intensity", "statement", "repetition",
           "corpus", "Path", " LABEL ", "Emotion", "file", "name", ""]
POOL_NAMES = ["a.wav", "./a.wav", "corpus/03a01Wa.wav", "b.flac", "sub/c.wav", "sub/../a.wav", "spa ce.wav",
              "ünï.wav", "link.wav", "loop.wav", "dangling.wav", "dir.wav", "gone.wav", "a,b.wav", 'q"uote.wav', "",
              " "]


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    """Real files (content does not matter: only existence is read), links, a loop and a folder named like audio."""
    root = tmp_path_factory.mktemp("pool").resolve()
    for name in ("a.wav", "b.flac", "sub/c.wav", "spa ce.wav", "ünï.wav", "a,b.wav", 'q"uote.wav'):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"RIFF")
    (root / "link.wav").symlink_to(root / "a.wav")
    (root / "loop.wav").symlink_to(root / "loop.wav")
    (root / "dangling.wav").symlink_to(root / "nowhere.wav")
    (root / "dir.wav").mkdir()
    corpus = root / "corpus"  # a tiny EmoDB folder (index_corpus reads names only), with a loop among its clips
    corpus.mkdir()
    for name in ("03a01Wa.wav", "08a02Fb.wav", "16b10Tb.wav"):
        (corpus / name).write_bytes(b"RIFF")
    (corpus / "03a01Na.wav").symlink_to(corpus / "03a01Na.wav")
    return root


#: Stands for the pool folder in drawn cells (strategies are built once, the folder is known per test).
POOL = "\x01POOL\x01"


def weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """One of the strategies, picked with the given weights (``one_of`` picks about evenly)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


# Weighted towards values that pass, so that examples reach the later checks (duplicates, missing files) and
# often end in clips, while still meeting random text, NUL bytes, line breaks and huge values.
PATHS = weighted(
    (6, st.sampled_from(POOL_NAMES)),
    (2, st.sampled_from(POOL_NAMES[:9]).map(lambda name: f"{POOL}/{name}")),  # absolute
    (1, st.text(max_size=12)),
    (1, st.sampled_from(["a\x00.wav", "a\n.wav", "a\r\nb.wav", "x" * 300 + ".wav", "d/" * 2100 + "a.wav",
                         "\ufeffa.wav", "a.wav\t"])),
)
LABELS = weighted((6, st.sampled_from([*EMOTIONS, *ALIASES])),
                  (1, st.sampled_from(["", "bored", "calm,sad", "\x00", "x" * 300])), (1, st.text(max_size=8)))
SPEAKERS = weighted((4, st.sampled_from(["", "1", "spk1", " spk2 ", "crema-d:1001", "a\x0bb", "x" * 500])),
                    (1, st.text(max_size=6)))
CELLS = st.one_of(PATHS, LABELS, SPEAKERS)
HEADERS = weighted(
    (4, st.sampled_from([["path", "label"], ["path", "label", "speaker"], ["Path", "Emotion", "Actor"],
                         [" path ", "LABEL", "speaker", "gender"], ["path", "label", "speaker"], ["path"],
                         ["path", "speaker"]])),
    (1, st.lists(st.one_of(st.sampled_from(COLUMNS), st.text(max_size=6)), max_size=5)),
)
ROWS = weighted((9, st.lists(weighted((6, st.tuples(PATHS, LABELS, SPEAKERS).map(list)),  # the usual order
                                     (1, st.lists(CELLS, max_size=6))),  # anything: short and long rows too
                            min_size=1, max_size=6)),
                (1, st.just([])))


@st.composite
def manifest_bytes(draw) -> bytes:
    """Random manifest bytes: mostly CSV-like text, with random header, cells, delimiter, line ends, quoting, encoding.

    Cells naming the pool folder hold :data:`POOL`; :func:`in_pool` puts the folder in.
    """
    if draw(st.integers(0, 19)) == 0:
        return draw(st.binary(max_size=120))
    header, rows = draw(HEADERS), list(draw(ROWS))  # a copy: st.just([]) hands out the same list each time
    cut = draw(st.lists(st.integers(0, 3), min_size=len(rows), max_size=len(rows)))
    rows = [row[:len(header)] if c else row for row, c in zip(rows, cut)]  # mostly no more cells than columns
    if draw(st.integers(0, 49)) == 0:
        rows.append(["h" * 140_000, "calm"])  # over the CSV reader's field limit
    delimiter = draw(st.sampled_from([",", ",", ",", ",", ",", ",", ";", "\t"]))
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    if draw(st.booleans()):
        buf = io.StringIO()
        quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
        writer = csv.writer(buf, delimiter=delimiter, lineterminator=ending, quoting=quoting)
        writer.writerow(header)
        writer.writerows(rows)
        text = buf.getvalue()
    else:  # joined by hand: unquoted commas, stray quotes, blank lines
        lines = [delimiter.join(header)] + [delimiter.join(row) for row in rows]
        prefixes = draw(st.lists(st.sampled_from([""] * 12 + ["  ", '"', ending, ",,"]), min_size=len(lines),
                                 max_size=len(lines)))
        text = ending.join(prefix + line for prefix, line in zip(prefixes, lines))
        text += draw(st.sampled_from(["", ending, ending * 2]))
    if draw(st.booleans()):
        text = "\ufeff" + text
    encoding = draw(st.sampled_from(["utf-8"] * 12 + ["utf-16", "utf-16-le", "latin-1", "cp1252"]))
    return text.encode(encoding, errors="replace")


MANIFESTS = manifest_bytes()


def in_pool(data: bytes, pool_dir: Path) -> bytes:
    """Drawn manifest bytes with the pool folder put in (in UTF-8: other encodings then miss it, as they may)."""
    return data.replace(POOL.encode(), str(pool_dir).encode())


def outcome(fn, *args, name: str | None = None, **kwargs):
    """``fn``'s result, or the SERError it raised, checked to be one short line (naming ``name`` when given)."""
    try:
        return fn(*args, **kwargs)
    except SERError as exc:
        message = str(exc)
        assert len(message.splitlines()) == 1, message
        assert len(message) < 2000, message[:200]
        if name is not None:
            assert name in message, message
        return exc


def check_clips(clips: list[Clip], *, labels: bool, check_files: bool) -> None:
    """What a reader promises: clips sorted by path, each file once, absolute, known labels, existing files."""
    assert isinstance(clips, list) and clips
    keys = [str(c.path) for c in clips]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    for clip in clips:
        assert clip.path.is_absolute()
        assert clip.label in EMOTIONS if labels else clip.label == ""
        assert clip.speaker == clip.speaker.strip()
        if check_files:
            assert clip.path.is_file()


@given(content=MANIFESTS)
def test_read_manifest_random_content(pool, content):
    """Random manifest bytes through read_manifest (labels and file checks on/off): clips or one line naming it."""
    manifest = pool / "m.csv"
    manifest.write_bytes(in_pool(content, pool))
    for labels in (True, False):
        for check_files in (True, False):
            result = outcome(read_manifest, manifest, labels=labels, check_files=check_files, name=str(manifest))
            if not isinstance(result, SERError):
                assert isinstance(result, list)
                check_clips(result, labels=labels, check_files=check_files)


SPECS = st.lists(st.sampled_from(["m1.csv", "sub/other/m2.csv", "corpus", "absent.csv", "", "./m1.csv"]),
                 min_size=1, max_size=3)


@given(content=MANIFESTS, specs=SPECS)
def test_load_datasets_random_specs(pool, content, specs):
    """Random manifests (in two folders), the corpus folder, missing and empty paths, combined: clips or one line."""
    # One drawn manifest in two folders: its relative paths name different files, its absolute ones the same.
    (pool / "sub" / "other").mkdir(exist_ok=True)
    for manifest in (pool / "m1.csv", pool / "sub" / "other" / "m2.csv"):
        manifest.write_bytes(in_pool(content, pool))
    specs = [str(pool / spec) if spec else spec for spec in specs]
    result = outcome(load_datasets, specs)
    if not isinstance(result, SERError):
        check_clips(result, labels=True, check_files=True)


def _writable(s: str) -> bool:
    return not any(ch in s for ch in "\r\n\x00")


NAMES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1,
                max_size=16).filter(lambda s: s not in (".", ".."))
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=10)
META_KEYS = st.sampled_from(("gender", "intensity", "statement", "repetition", "corpus"))
#: (file name, label, speaker, metadata) of clips: any characters (file names: no NUL or "/") ...
ANY_CLIPS = st.lists(st.tuples(NAMES, st.sampled_from(EMOTIONS), TEXT,
                               st.dictionaries(META_KEYS, st.one_of(TEXT, st.integers(0, 99)))),
                     max_size=6, unique_by=lambda t: t[0])
#: ... or only values a manifest holds as written: no line breaks or NUL, no spaces around speakers or after names.
VALID_CLIPS = st.lists(st.tuples(NAMES.filter(lambda s: _writable(s) and s == s.rstrip()), st.sampled_from(EMOTIONS),
                                 TEXT.filter(lambda s: _writable(s) and s == s.strip()),
                                 st.dictionaries(META_KEYS, st.one_of(TEXT.filter(_writable), st.integers(0, 99)))),
                       max_size=6, unique_by=lambda t: t[0])
_folders = itertools.count()


def make_clips(base: Path, drawn) -> list[Clip]:
    """Clips of drawn (name, label, speaker, metadata) tuples, their files in ``base``."""
    return [Clip(path=base / name, label=label, speaker=speaker, meta=meta) for name, label, speaker, meta in drawn]


def round_trip(clips: list[Clip], manifest: Path, *, check_files: bool) -> None:
    """write_manifest then read_manifest: the same clips (path, label, speaker; metadata as text, empty dropped)."""
    back = read_manifest(write_manifest(clips, manifest), check_files=check_files)
    expected = sorted(clips, key=lambda c: str(c.path))
    assert [(c.path, c.label, c.speaker) for c in back] == [(c.path, c.label, c.speaker) for c in expected]
    assert [c.meta for c in back] == [{k: str(v) for k, v in c.meta.items() if str(v)} for c in expected]


@given(drawn=VALID_CLIPS, check_files=st.booleans())
def test_write_read_round_trip(tmp_path_factory, drawn, check_files):
    """Random valid clip lists (any characters but line breaks and NUL) read back exactly as written."""
    out = tmp_path_factory.getbasetemp().resolve() / "round-trip"
    out.mkdir(exist_ok=True)
    base = out / str(next(_folders))  # a fresh folder per example: no clean-up between examples to wait for
    clips = make_clips(base, drawn)
    if check_files:
        base.mkdir()
        for clip in clips:
            clip.path.write_bytes(b"")
    if not clips:  # a header-only manifest is refused on reading, never silently empty
        assert "manifest has no rows" in str(outcome(round_trip, clips, out / "m.csv", check_files=False))
        return
    round_trip(clips, out / "m.csv", check_files=check_files)


@given(drawn=ANY_CLIPS.filter(bool))
def test_write_refuses_or_round_trips(tmp_path_factory, drawn):
    """Any clips: write_manifest refuses exactly the values that would not read back, and the rest round-trips."""
    out = tmp_path_factory.getbasetemp().resolve() / "round-trip-any"
    out.mkdir(exist_ok=True)
    clips = make_clips(out / "clips", drawn)
    manifest = out / "m.csv"
    manifest.unlink(missing_ok=True)

    def bad(value: object, strip: bool) -> bool:
        text = str(value)
        return any(ch in text for ch in "\r\n\x00") or (strip and text != text.strip())

    refused = any(bad(c.path, True) or bad(c.speaker, True) or any(bad(v, False) for v in c.meta.values())
                  for c in clips)
    result = outcome(round_trip, clips, manifest, check_files=False, name=str(manifest))
    assert isinstance(result, ManifestError) == refused, result
    assert manifest.exists() != refused  # a refused write leaves nothing behind
    assert os.listdir(out) == (["m.csv"] if not refused else [])  # nor a temporary file
