"""Property tests: any profile or speaker-norm file, however broken, is either valid or refused in one line.

Every example writes a file into a temporary folder and reads it back with :mod:`ser.speakers` directly (no
model is loaded), so the shared profile's 2000 examples per property stay within seconds. An example passes
when the file loads as a usable profile (finite statistics, a positive clip count, and standardised features
that stay finite) or fails with the package's own error whose message is one line naming the file. Any
other exception, a multi-line message or NaN anywhere fails the property.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import event, given, note
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ser.cli import cmd_speakers_list
from ser.errors import ModelError, SERError
from ser.speakers import (
    MAX_CLIPS,
    MAX_STAT,
    ProfileError,
    SpeakerNorm,
    SpeakerProfile,
    SpeakerStats,
    list_profiles,
)

SHAPE = (2, 3)
PROFILE = {"format": 1, "kind": "speaker-profile", "name": "alice", "features": "abc123", "clips": 4,
           "created": "2024-05-01T12:00:00+00:00", "profile_kind": "enrol"}
NORM = {"format": 1, "kind": "speaker-norm", "prior_n": 24, "prior_weight": 5.0}
NORM_ARRAYS = ("prior_mean", "prior_var", "enrol_shift", "enrol_scale")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# --- strategies ------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=4)
names = st.from_regex(NAME, fullmatch=True)
# Values near each field's boundary, besides any JSON value.
SPECIAL = {
    "format": st.sampled_from([1, 1.0, True, 0, 2, "1", None]),
    "kind": st.sampled_from(["speaker-profile", "speaker-norm", "", None]),
    "name": names | st.sampled_from(["", "../etc", ".x", "x" * 65, "a\nb", "alice\n", "é"]),
    "features": st.sampled_from(["", "f", "x" * 64, "x" * 65, "a\nb", "\x1b[2J"]) | st.text(max_size=70),
    "created": st.sampled_from(["", "2024-05-01", "x" * 65, "a\nb", "\x1b[2J", "\u2028"]) | st.text(max_size=70),
    "clips": st.integers(-3, 3) | st.sampled_from([MAX_CLIPS, MAX_CLIPS + 1, 2 ** 63, 10 ** 30, 3.0, True, False,
                                                   "many", "3", float("nan"), float("inf")]),
    "prior_n": st.integers(-3, 3) | st.sampled_from([MAX_CLIPS + 1, 2 ** 63, 24.0, True, "24"]),
    "prior_weight": st.floats() | st.integers(-3, 3) | st.sampled_from([MAX_CLIPS, MAX_CLIPS + 1, 10 ** 30, True]),
    "profile_kind": st.sampled_from(["enrol", "adapt", "other", "", None, ["enrol"]]),
}


REPLACE = {field: strategy | json_values for field, strategy in SPECIAL.items()}


@st.composite
def headers(draw, base: dict) -> object:
    """``base`` with some fields dropped or replaced, plus extra fields; sometimes no object at all."""
    if draw(st.integers(0, 19)) == 0:
        return draw(json_values)
    header = dict(base)
    fields = st.sampled_from(sorted(base))
    for field in draw(st.sets(fields, max_size=2)):
        del header[field]
    for field in draw(st.sets(fields, max_size=3)):
        header[field] = draw(REPLACE.get(field, json_values))
    header.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2)))
    return header


dtypes = (hnp.floating_dtypes(sizes=(16, 32, 64, 128)) | hnp.integer_dtypes() | hnp.complex_number_dtypes()
          | hnp.boolean_dtypes() | hnp.unicode_string_dtypes(max_len=3) | hnp.byte_string_dtypes(max_len=3)
          | hnp.datetime64_dtypes())
float_dtypes = hnp.floating_dtypes(sizes=(16, 32, 64))
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)
any_arrays = dtypes.flatmap(lambda d: hnp.arrays(d, shapes))


@st.composite
def array_pairs(draw, names_: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Arrays for ``names_``: mostly floats of one shape (NaN, inf, negatives, huge values included)."""
    if draw(st.booleans()):
        shape = draw(st.sampled_from([SHAPE, (3,), (1,), (0,), ()]) | shapes)
        out = {}
        for name in names_:
            dtype = draw(float_dtypes)
            kind = draw(st.sampled_from(["plain", "plain", "any"]))
            elements = (st.floats(-10, 10, width=dtype.itemsize * 8) if kind == "plain"
                        else hnp.from_dtype(dtype))
            out[name] = draw(hnp.arrays(dtype, shape, elements=elements))
        return out
    return {name: draw(any_arrays) for name in names_}


# --- helpers ---------------------------------------------------------------------

def _fresh(path: Path) -> Path:
    """``path``, removed first: on ext4, rewriting a file in place (truncating it) flushes it on close,
    30 times slower than writing a new file, which would dominate 2000 examples."""
    path.unlink(missing_ok=True)
    return path


def _write(path: Path, header, arrays: dict[str, np.ndarray], *, compressed: bool = False) -> Path:
    save = np.savez_compressed if compressed else np.savez
    with open(_fresh(path), "wb") as fh:  # a file object: np.savez would append ".npz" to other names
        save(fh, header=np.array(json.dumps(header)), **arrays)
    return path


def _refused(exc: Exception, path: Path, error: type) -> None:
    """The error is the package's own, of the right class, and one line that names the file first."""
    assert isinstance(exc, error) and isinstance(exc, SERError), type(exc)
    message = str(exc)
    assert message.startswith(f"{path}: "), message
    assert len(message.splitlines()) == 1, message


def _load(path: Path, **kwargs):
    """The profile, or the ProfileError (checked); any other exception propagates and fails the test."""
    try:
        return SpeakerProfile.load(path, **kwargs)
    except ProfileError as exc:
        _refused(exc, path, ProfileError)
        return exc


def _norm(shape) -> SpeakerNorm:
    rng = np.random.default_rng(0)
    prior = SpeakerStats(rng.normal(size=shape), rng.random(shape) + 0.1, 24)
    return SpeakerNorm(prior, rng.normal(size=shape), rng.random(shape) + 0.5, 5.0)


def _check_usable(profile: SpeakerProfile) -> None:
    """A loaded profile is well-formed, and standardising finite features with it gives finite values."""
    stats = profile.stats
    assert NAME.fullmatch(profile.name) and profile.kind in ("enrol", "adapt")
    assert type(stats.n) is int and 1 <= stats.n <= MAX_CLIPS
    assert stats.mean.dtype == stats.var.dtype == np.float64 and stats.mean.shape == stats.var.shape
    assert stats.mean.size > 0 and np.isfinite(stats.mean).all() and np.isfinite(stats.var).all()
    assert (stats.var >= 0).all()
    assert isinstance(profile.created, str) and profile.created.isprintable()
    x = np.random.default_rng(1).normal(size=(3, *stats.mean.shape)) * 100
    assert np.isfinite(_norm(stats.mean.shape).normalize(x, stats, profile.kind)).all()


def _profile_header_ok(h) -> bool:
    """What a valid profile header is, written out independently of the loader."""
    def text(v, empty_ok):
        return isinstance(v, str) and len(v) <= 64 and v.isprintable() and (empty_ok or v != "")

    return (isinstance(h, dict) and type(h.get("format")) is int and h["format"] == 1
            and h.get("kind") == "speaker-profile" and isinstance(h.get("name"), str)
            and NAME.fullmatch(h["name"]) is not None and text(h.get("features"), False)
            and type(h.get("clips")) is int and 1 <= h["clips"] <= MAX_CLIPS
            and ("created" not in h or text(h["created"], True))
            and ("profile_kind" not in h or h["profile_kind"] in ("enrol", "adapt")))


def _arrays_ok(arrays: dict[str, np.ndarray], nonnegative: tuple[str, ...]) -> bool:
    first = next(iter(arrays.values()))
    return all(a.dtype.kind == "f" and a.ndim > 0 and a.size > 0 and a.shape == first.shape
               and np.isfinite(a).all() and float(np.abs(a).max()) <= MAX_STAT
               and (name not in nonnegative or (a >= 0).all()) for name, a in arrays.items())


GOOD_ARRAYS = {"mean": np.linspace(-3, 3, 6, dtype=np.float32).reshape(SHAPE),
               "std": np.linspace(0, 2, 6).astype(np.float16).reshape(SHAPE)}


# --- properties ------------------------------------------------------------------------

@given(data=st.binary(max_size=600), prefix=st.sampled_from([b"", b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY\x01\x00"]))
def test_random_bytes_are_refused_in_one_line(tmp_path, data, prefix):
    path = _fresh(tmp_path / "random.npz")
    path.write_bytes(prefix + data)
    assert isinstance(_load(path), ProfileError)
    try:
        SpeakerNorm.load(path)
        raise AssertionError("random bytes loaded as a speaker norm")
    except ModelError as exc:
        _refused(exc, path, ModelError)


@given(header=headers(PROFILE))
def test_mutated_profile_headers(tmp_path, header):
    """A header loads exactly when every field is valid (extra fields ignored), with the header's values."""
    note(repr(header))
    path = _write(tmp_path / "p.npz", header, GOOD_ARRAYS)
    result = _load(path, features=header.get("features") if isinstance(header, dict) else None)
    event("loaded" if isinstance(result, SpeakerProfile) else "refused")
    assert isinstance(result, SpeakerProfile) == _profile_header_ok(header), result
    if isinstance(result, SpeakerProfile):
        _check_usable(result)
        assert (result.name, result.stats.n, result.features) == (header["name"], header["clips"], header["features"])
        assert result.kind == header.get("profile_kind", "enrol") and result.created == header.get("created", "")


@given(arrays=array_pairs(("mean", "std")), members=st.sampled_from(["both", "both", "no std", "no mean", "extra"]))
def test_random_profile_arrays(tmp_path, arrays, members):
    """Any shapes, dtypes and values: a usable profile exactly when both arrays are valid statistics."""
    note({k: (a.dtype, a.shape) for k, a in arrays.items()})
    if members == "no std":
        del arrays["std"]
    elif members == "no mean":
        del arrays["mean"]
    elif members == "extra":
        arrays["other"] = np.arange(3)
    path = _write(tmp_path / "p.npz", PROFILE, arrays, compressed=members == "extra")
    result = _load(path)
    event("loaded" if isinstance(result, SpeakerProfile) else "refused")
    ok = "mean" in arrays and "std" in arrays and _arrays_ok({k: arrays[k] for k in ("mean", "std")}, ("std",))
    assert isinstance(result, SpeakerProfile) == ok, result
    if ok:
        _check_usable(result)
        shape = arrays["mean"].shape
        assert result.stats.mean.shape == shape
        # The model's feature shape: accepted when equal, one line naming the file otherwise.
        assert isinstance(_load(path, shape=shape), SpeakerProfile)
        assert isinstance(_load(path, shape=(*shape, 1)), ProfileError)


@functools.cache
def _good_files() -> tuple[bytes, bytes]:
    """A valid small profile, compressed (as ``save`` writes it) and not (cached, not a fixture: a failing
    example's report then shows the edits, not kilobytes of file)."""
    with tempfile.TemporaryDirectory() as folder:
        rng = np.random.default_rng(3)
        profile = SpeakerProfile("alice", SpeakerStats(rng.normal(size=SHAPE), rng.random(SHAPE), 4), "abc123")
        plain = _write(Path(folder) / "plain.npz", PROFILE, GOOD_ARRAYS)
        return profile.save(folder).read_bytes(), plain.read_bytes()


@given(which=st.integers(0, 1), cut=st.integers(0, 4000) | st.none(),
       edits=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=4),
       insert=st.tuples(st.integers(0, 4000), st.binary(min_size=1, max_size=8)) | st.none())
def test_truncated_and_corrupted_profiles(tmp_path, which, cut, edits, insert):
    """Cut short, bytes overwritten or inserted: still a valid profile, or one line."""
    data = bytearray(_good_files()[which])
    for position, value in edits:
        data[position % len(data)] = value
    if insert is not None:
        data[insert[0] % len(data):insert[0] % len(data)] = insert[1]
    if cut is not None:
        data = data[:cut % (len(data) + 1)]
    path = _fresh(tmp_path / "p.npz")
    path.write_bytes(bytes(data))
    result = _load(path, features="abc123", shape=SHAPE)
    event("loaded" if isinstance(result, SpeakerProfile) else "refused")
    if isinstance(result, SpeakerProfile):
        _check_usable(result)


@st.composite
def norm_arrays(draw) -> dict[str, np.ndarray]:
    """Valid norm arrays with one or two replaced by random ones (cheaper to draw than four random arrays)."""
    arrays = {name: np.full(SHAPE, 0.5, np.float32) for name in NORM_ARRAYS}
    for name in draw(st.sets(st.sampled_from(NORM_ARRAYS), max_size=2)):
        arrays[name] = draw(any_arrays | hnp.arrays(np.float32, st.sampled_from([SHAPE, (3,)])))
    return arrays


@given(header=headers(NORM), arrays=norm_arrays())
def test_mutated_speaker_norms(tmp_path, header, arrays):
    """A model folder's speakers.npz: a usable norm or one ModelError line, whatever its header and arrays."""
    note(repr(header))
    path = _write(tmp_path / "speakers.npz", header, arrays)
    try:
        norm = SpeakerNorm.load(path)
    except ModelError as exc:
        _refused(exc, path, ModelError)
        norm = None
    h = header
    header_ok = (isinstance(h, dict) and type(h.get("format")) is int and h["format"] == 1
                 and h.get("kind") == "speaker-norm" and type(h.get("prior_n")) is int
                 and 1 <= h["prior_n"] <= MAX_CLIPS and type(h.get("prior_weight")) in (int, float)
                 and 0 <= h["prior_weight"] <= MAX_CLIPS)
    event("loaded" if norm is not None else "refused")
    assert (norm is not None) == (header_ok and _arrays_ok(arrays, ("prior_var", "enrol_scale")))
    if norm is not None:
        shape = norm.prior.mean.shape
        stats = SpeakerStats(np.full(shape, 2.0), np.zeros(shape), 1)  # a zero variance: EPS keeps it finite
        x = np.random.default_rng(1).normal(size=(3, *shape)) * 100
        for kind in ("enrol", "adapt"):
            assert np.isfinite(norm.normalize(x, stats, kind)).all()
        assert np.isfinite(norm.normalize(x, None)).all()


stems = names | st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1,
                        max_size=10).filter(lambda s: s not in (".", ".."))
# A few fixed headers, good and bad (test_mutated_profile_headers explores headers; this one explores folders).
SOME_HEADERS = [PROFILE, {**PROFILE, "name": "zed"}, {**PROFILE, "clips": -5}, {**PROFILE, "clips": "many"},
                {**PROFILE, "name": 5}, {**PROFILE, "profile_kind": None}, {**PROFILE, "format": 2},
                {k: v for k, v in PROFILE.items() if k != "features"}, [PROFILE], "speaker-profile", None]
contents = (st.sampled_from([("good", None), ("renamed", None), ("folder", None)])
            | st.tuples(st.just("bytes"), st.binary(max_size=64))
            | st.tuples(st.just("header"), st.sampled_from(SOME_HEADERS)))


@given(entries=st.lists(st.tuples(stems, contents), max_size=4, unique_by=lambda e: e[0]))
def test_list_profiles_over_a_mixed_folder(tmp_path, capsys, entries):
    """One row per file, named by the file; errors exactly for unusable files; the CLI prints one line each."""
    folder = tmp_path / "profiles"  # one folder, emptied for each example (cheaper than a new one)
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():
        old.rmdir() if old.is_dir() else old.unlink()
    expected = {}  # file stem -> (usable, listed with a note that the header names another speaker)
    for stem, (content, payload) in entries:
        path = folder / f"{stem}.npz"
        usable_name = NAME.fullmatch(stem) is not None
        if content == "folder":
            path.mkdir()
            expected[stem] = (False, False)
        elif content == "bytes":
            path.write_bytes(payload)
            expected[stem] = (False, False)
        elif content == "header":
            _write(path, payload, GOOD_ARRAYS)
            ok = usable_name and _profile_header_ok(payload)
            expected[stem] = (ok, ok and payload["name"] != stem)
        else:
            name = "zed" if content == "renamed" or not usable_name else stem
            _write(path, {**PROFILE, "name": name}, GOOD_ARRAYS)
            expected[stem] = (usable_name, usable_name and name != stem)
    rows = list_profiles(folder)
    event(f"{sum('error' in row for row in rows)} of {len(rows)} unusable")
    assert sorted(row["name"] for row in rows) == sorted(expected)
    for row in rows:
        ok, renamed = expected[row["name"]]
        assert ("error" not in row) == ok, row
        if ok:
            assert ("note" in row) == renamed
        else:
            assert len(row["error"].splitlines()) == 1 and str(folder) in row["error"]
    # The command itself (not main: building the whole CLI parser per example would dominate the time).
    capsys.readouterr()
    status = cmd_speakers_list(argparse.Namespace(speakers_dir=folder, json=False))
    assert status == (0 if all(ok for ok, _ in expected.values()) else 1)
    out = capsys.readouterr().out
    assert len(out.splitlines()) == len(entries), out
