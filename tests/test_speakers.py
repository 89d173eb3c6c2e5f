"""Speaker adaptation: statistics and shrinkage, profiles, the adapted head, enrolment and the CLI."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import needs_whisper
from ser.cli import main
from ser.config import preset
from ser.errors import ConfigError, ModelError
from ser.speakers import (
    ProfileError,
    SpeakerNorm,
    SpeakerProfile,
    SpeakerStats,
    check_name,
    enrol,
    list_profiles,
    normalize_by_group,
    remove_profile,
)



def _norm(shape=(2, 3), k0=5.0) -> SpeakerNorm:
    prior = SpeakerStats(np.zeros(shape), np.ones(shape), 10)
    return SpeakerNorm(prior, np.full(shape, 0.5), np.full(shape, 2.0), k0)


# --- statistics and shrinkage ----------------------------------------------

def test_stats_and_standardisation():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(500, 2, 3))
    stats = SpeakerStats.of(x)
    assert stats.n == 500 and stats.mean.shape == (2, 3)
    z = stats.apply(x)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-3)
    with pytest.raises(ValueError, match="at least one clip"):
        SpeakerStats.of(np.zeros((0, 2, 3)))


def test_shrinkage_weighs_clips_against_the_prior():
    """n clips weigh n/(n+k0): none -> the prior; few -> in between; many -> nearly their own."""
    norm = _norm(k0=5.0)
    own = SpeakerStats(np.full((2, 3), 10.0), np.full((2, 3), 4.0), 5)
    assert norm.resolve(None) is norm.prior
    half = norm.resolve(own)
    np.testing.assert_allclose(half.mean, 5.0)
    np.testing.assert_allclose(half.var, 2.5)
    many = norm.resolve(SpeakerStats(own.mean, own.var, 995))
    np.testing.assert_allclose(many.mean, 9.95)
    # Enrolment statistics (calm speech) are shifted and scaled to all-emotion estimates first.
    enrol = norm.resolve(SpeakerStats(own.mean, own.var, 995), kind="enrol")
    np.testing.assert_allclose(enrol.mean, (995 * 10.5) / 1000)
    np.testing.assert_allclose(enrol.var, (995 * 8.0 + 5) / 1000)
    with pytest.raises(ValueError, match="kind='other'"):
        norm.resolve(own, kind="other")


def test_norm_fit_learns_prior_and_enrolment_offset():
    """Speakers differ by an offset; calm clips sit 1.0 below each speaker's mean."""
    rng = np.random.default_rng(1)
    xs, speakers, calm = [], [], []
    for s in range(6):
        offset = rng.normal(0, 5, size=(2, 3))
        is_calm = np.arange(40) < 10
        x = offset + rng.normal(0, 1, size=(40, 2, 3)) - 1.0 * is_calm[:, None, None]
        xs.append(x), speakers.extend([f"s{s}"] * 40), calm.extend(is_calm)
    x, speakers, calm = np.concatenate(xs), np.array(speakers), np.array(calm)
    norm = SpeakerNorm.fit(x, speakers, calm, prior_weight=3.0)
    assert norm.prior.n == 6 and norm.prior_weight == 3.0
    np.testing.assert_allclose(norm.enrol_shift, 0.75, atol=0.3)  # all-clip mean − calm mean = 1.0 × 30/40
    z = normalize_by_group(x, speakers, SpeakerNorm.fit(x, speakers, calm, prior_weight=0.0))
    for s in set(speakers):
        np.testing.assert_allclose(z[speakers == s].mean(axis=0), 0, atol=1e-4)  # each speaker's offset removed
    # With a prior weight, 40 clips keep 3/43 of the way toward the typical speaker.
    shrunk = normalize_by_group(x, speakers, norm)
    assert 0.05 < np.abs(shrunk[speakers == "s0"].mean(axis=0)).max() < 1.0


def test_norm_file_round_trip_and_malformed(tmp_path):
    norm = _norm()
    path = norm.save(tmp_path / "speakers.npz")
    back = SpeakerNorm.load(path)
    np.testing.assert_allclose(back.enrol_scale, norm.enrol_scale)
    assert back.prior.n == 10 and back.prior_weight == 5.0
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="bad.npz: not a readable speaker-norm file"):
        SpeakerNorm.load(tmp_path / "bad.npz")


# --- profiles ------------------------------------------------------------------

def _profile(name="alice", shape=(7, 1024), features="abc123") -> SpeakerProfile:
    rng = np.random.default_rng(2)
    return SpeakerProfile(name, SpeakerStats(rng.normal(size=shape), rng.random(shape), 10), features)


def test_profile_round_trip_is_small(tmp_path):
    path = _profile().save(tmp_path)
    assert path == tmp_path / "alice.npz"
    assert path.stat().st_size <= 64 * 1024
    back = SpeakerProfile.load(path, features="abc123")
    assert back.name == "alice" and back.stats.n == 10 and back.kind == "enrol" and back.created
    np.testing.assert_allclose(back.stats.mean, _profile().stats.mean, rtol=1e-6)
    np.testing.assert_allclose(back.stats.var, _profile().stats.var, rtol=2e-3)
    rows = list_profiles(tmp_path)
    assert [r["name"] for r in rows] == ["alice"] and rows[0]["clips"] == 10
    assert remove_profile("alice", tmp_path) == path and not path.exists()
    with pytest.raises(ProfileError, match="no profile for speaker 'alice'"):
        remove_profile("alice", tmp_path)


def test_profile_folder_that_is_a_file(tmp_path):
    """Writing into a 'folder' that is a file is one clear error, not a traceback."""
    (tmp_path / "taken").write_text("x")
    with pytest.raises(ProfileError, match="cannot write the profile"):
        _profile().save(tmp_path / "taken")


@pytest.mark.parametrize("name", ["", "../etc", "a/b", ".hidden", "-x", "x" * 65, "é", "alice\n", 5, None])
def test_bad_speaker_names(name):
    with pytest.raises(ProfileError, match="speaker"):
        check_name(name)


def test_malformed_and_foreign_profiles(tmp_path):
    good = _profile().save(tmp_path)
    with pytest.raises(ProfileError, match="made for another model's features"):
        SpeakerProfile.load(good, features="other")
    cases = {}
    cases["garbage.npz"] = b"\x00garbage"
    cases["truncated.npz"] = good.read_bytes()[:200]
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ProfileError, match=f"{name}: not a readable speaker-profile file"):
            SpeakerProfile.load(tmp_path / name)
    # A pickled object array is refused, not unpickled.
    np.savez(tmp_path / "pickled.npz", header=np.array([{"kind": "speaker-profile"}], dtype=object),
             mean=np.zeros(3), std=np.ones(3))
    with pytest.raises(ProfileError, match="pickled.npz: not a readable"):
        SpeakerProfile.load(tmp_path / "pickled.npz")
    # Another kind of npz, mismatched shapes, non-finite values, a future format.
    header = {"format": 1, "kind": "speaker-profile", "name": "x", "features": "f", "clips": 3}
    np.savez(tmp_path / "norm.npz", header=np.array(json.dumps({**header, "kind": "speaker-norm"})),
             mean=np.zeros(3), std=np.ones(3))
    np.savez(tmp_path / "shapes.npz", header=np.array(json.dumps(header)), mean=np.zeros(3), std=np.ones(4))
    np.savez(tmp_path / "nan.npz", header=np.array(json.dumps(header)), mean=np.full(3, np.nan), std=np.ones(3))
    np.savez(tmp_path / "future.npz", header=np.array(json.dumps({**header, "format": 99})), mean=np.zeros(3),
             std=np.ones(3))
    for name, message in [("norm.npz", "not a speaker-profile file"), ("shapes.npz", "field 'std' has shape"),
                          ("nan.npz", "field 'mean' holds non-finite"), ("future.npz", "format 99 is not supported")]:
        with pytest.raises(ProfileError, match=f"{name}: {message}"):
            SpeakerProfile.load(tmp_path / name)
    with pytest.raises(ProfileError, match="missing.npz: file not found"):
        SpeakerProfile.load(tmp_path / "missing.npz")
    assert zipfile.is_zipfile(good)


# --- malformed profile and norm files: one line naming the file, the field and the expectation ---------

_HEADER = {"format": 1, "kind": "speaker-profile", "name": "x", "features": "f", "clips": 3,
           "created": "2024-01-01T00:00:00+00:00", "profile_kind": "enrol"}


def _write(path: Path, header, **arrays) -> Path:
    """An npz with a JSON header and the given arrays (default: a valid 3-dimension profile)."""
    arrays = arrays or {"mean": np.zeros(3, np.float32), "std": np.ones(3, np.float16)}
    np.savez(path, header=np.array(json.dumps(header)), **arrays)
    return path


@pytest.mark.parametrize("field, value, expected", [
    ("clips", -5, "a positive integer"), ("clips", 0, "a positive integer"), ("clips", "many", "a positive integer"),
    ("clips", 2.5, "a positive integer"), ("clips", 3.0, "a positive integer"), ("clips", True, "a positive integer"),
    ("clips", None, "a positive integer"), ("clips", 10 ** 30, "a positive integer"),
    ("clips", float("nan"), "a positive integer"),
    ("name", 5, "a speaker name"), ("name", "../etc", "a speaker name"), ("name", "a\nb", "a speaker name"),
    ("features", 5, "the feature fingerprint"), ("features", "", "the feature fingerprint"),
    ("features", "a\nb", "the feature fingerprint"), ("created", 5, "the enrolment time"),
    ("created", "x\x1b[2J", "the enrolment time"), ("profile_kind", "other", "'enrol' or 'adapt'"),
    ("profile_kind", None, "'enrol' or 'adapt'"),
])
def test_profile_header_fields_are_checked(tmp_path, field, value, expected):
    """A header value of the wrong type or range is one clear line, not a traceback or NaN scores later."""
    path = _write(tmp_path / "bad.npz", {**_HEADER, field: value})
    with pytest.raises(ProfileError) as info:
        SpeakerProfile.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: field {field!r} = ") and f": expected {expected}" in message
    assert "\n" not in message


@pytest.mark.parametrize("field", ["name", "features", "clips"])
def test_profile_header_fields_are_required(tmp_path, field):
    header = {k: v for k, v in _HEADER.items() if k != field}
    with pytest.raises(ProfileError, match=f"bad.npz: field {field!r} is missing: expected "):
        SpeakerProfile.load(_write(tmp_path / "bad.npz", header))


def test_profile_optional_header_fields_default(tmp_path):
    """``created`` and ``profile_kind`` may be absent (older files); other fields are ignored."""
    header = {k: v for k, v in _HEADER.items() if k not in ("created", "profile_kind")}
    back = SpeakerProfile.load(_write(tmp_path / "x.npz", {**header, "extra": [1, {"a": None}]}))
    assert back.created == "" and back.kind == "enrol" and back.stats.n == 3


def test_format_must_be_the_integer_1(tmp_path):
    """``true == 1`` in Python: the format check compares types too."""
    for value in (True, 1.0, "1"):
        with pytest.raises(ProfileError, match=r"bad.npz: format .* is not supported \(expected 1\)"):
            SpeakerProfile.load(_write(tmp_path / "bad.npz", {**_HEADER, "format": value}))


@pytest.mark.parametrize("mean, std, message", [
    (np.array(["a", "b", "c"]), np.array(["a", "b", "c"]), "field 'mean' holds <U1 values: expected floating-point"),
    (np.zeros(3, complex), np.ones(3, complex), "field 'mean' holds complex128 values: expected floating-point"),
    (np.zeros(3, np.int64), np.ones(3, np.int64), "field 'mean' holds int64 values: expected floating-point"),
    (np.zeros(3, bool), np.ones(3, bool), "field 'mean' holds bool values: expected floating-point"),
    (np.zeros(0), np.zeros(0), r"field 'mean' has shape \(0,\): expected a non-empty array"),
    (np.zeros((2, 0)), np.zeros((2, 0)), r"field 'mean' has shape \(2, 0\): expected a non-empty array"),
    (np.float32(1.0), np.float16(1.0), r"field 'mean' has shape \(\): expected a non-empty array"),
    (np.zeros(3), np.ones(4), r"field 'std' has shape \(4,\): expected the shape of 'mean', \(3,\)"),
    (np.full(3, np.nan), np.ones(3), "field 'mean' holds non-finite values: expected finite numbers"),
    (np.zeros(3), np.array([1.0, np.inf, 1.0]), "field 'std' holds non-finite values: expected finite numbers"),
    (np.zeros(3), np.array([1.0, -1.0, 1.0]), "field 'std' holds negative values: expected standard deviations"),
    (np.full(3, 1e300), np.ones(3), "field 'mean' holds values beyond"),
    (np.zeros(3), np.full(3, 1e200), "field 'std' holds values beyond"),
])
def test_profile_arrays_are_checked(tmp_path, mean, std, message):
    with pytest.raises(ProfileError, match=f"bad.npz: {message}"):
        SpeakerProfile.load(_write(tmp_path / "bad.npz", _HEADER, mean=mean, std=std))


def test_object_and_missing_arrays(tmp_path):
    np.savez(tmp_path / "object.npz", header=np.array(json.dumps(_HEADER)), mean=np.array([1, "a"], dtype=object),
             std=np.ones(2))
    with pytest.raises(ProfileError, match="object.npz: not a readable speaker-profile file"):
        SpeakerProfile.load(tmp_path / "object.npz")
    np.savez(tmp_path / "nostd.npz", header=np.array(json.dumps(_HEADER)), mean=np.zeros(3))
    with pytest.raises(ProfileError, match="nostd.npz: not a readable speaker-profile file"):
        SpeakerProfile.load(tmp_path / "nostd.npz")
    np.savez(tmp_path / "header.npz", header=np.arange(3), mean=np.zeros(3), std=np.ones(3))
    with pytest.raises(ProfileError, match="header.npz: not a readable speaker-profile file"):
        SpeakerProfile.load(tmp_path / "header.npz")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    (tmp_path / "plain.npy").rename(tmp_path / "plain.npz")
    with pytest.raises(ProfileError, match="plain.npz: not a readable speaker-profile file"):
        SpeakerProfile.load(tmp_path / "plain.npz")


def test_profile_shape_is_checked_against_the_model(tmp_path):
    """A profile is only used with a model whose features have its shape (else: broadcast errors or junk)."""
    path = _profile(shape=(7, 1024)).save(tmp_path)
    assert SpeakerProfile.load(path, features="abc123", shape=(7, 1024)).stats.mean.shape == (7, 1024)
    with pytest.raises(ProfileError, match=r"alice.npz: field 'mean' has shape \(7, 1024\): expected this model's "
                                           r"feature shape \(7, 512\)"):
        SpeakerProfile.load(path, features="abc123", shape=(7, 512))
    profile = _profile(shape=(3,))
    assert profile.check_shape((3,)) is profile
    with pytest.raises(ProfileError, match=r"speaker 'alice': statistics of shape \(3,\), this model's features "
                                           r"have shape \(7, 1024\)"):
        profile.check_shape((7, 1024))


@pytest.mark.parametrize("change, message", [
    ({"prior_n": -1}, "field 'prior_n' = -1: expected a positive integer"),
    ({"prior_n": "24"}, "field 'prior_n' = '24': expected a positive integer"),
    ({"prior_weight": -1.0}, "field 'prior_weight' = -1.0: expected a number from 0 to"),
    ({"prior_weight": None}, "field 'prior_weight' = None: expected a number from 0 to"),
    ({"prior_weight": True}, "field 'prior_weight' = True: expected a number from 0 to"),
    ({"prior_n": None, "prior_weight": 5.0}, "field 'prior_n' = None: expected a positive integer"),
])
def test_norm_header_is_checked(tmp_path, change, message):
    header = {"format": 1, "kind": "speaker-norm", "prior_n": 10, "prior_weight": 5.0, **change}
    ones = np.ones((2, 3), np.float32)
    path = _write(tmp_path / "speakers.npz", header, prior_mean=ones, prior_var=ones, enrol_shift=ones,
                  enrol_scale=ones)
    with pytest.raises(ModelError, match=f"speakers.npz: {message}"):
        SpeakerNorm.load(path)


@pytest.mark.parametrize("name, value, message", [
    ("prior_var", -np.ones((2, 3)), "field 'prior_var' holds negative values"),
    ("enrol_scale", -np.ones((2, 3)), "field 'enrol_scale' holds negative values"),
    ("prior_mean", np.full((2, 3), np.nan), "field 'prior_mean' holds non-finite values"),
    ("enrol_shift", np.ones(6), r"field 'enrol_shift' has shape \(6,\): expected the shape of 'prior_mean'"),
    ("prior_mean", np.array([["a"]]), "field 'prior_mean' holds <U1 values"),
])
def test_norm_arrays_are_checked(tmp_path, name, value, message):
    arrays = {k: np.ones((2, 3), np.float32) for k in ("prior_mean", "prior_var", "enrol_shift", "enrol_scale")}
    header = {"format": 1, "kind": "speaker-norm", "prior_n": 10, "prior_weight": 5.0}
    path = _write(tmp_path / "speakers.npz", header, **{**arrays, name: value})
    with pytest.raises(ModelError, match=f"speakers.npz: {message}"):
        SpeakerNorm.load(path)


def test_list_profiles_lists_every_file_under_its_file_name(tmp_path):
    """A bad file is a row with its error (whatever went wrong), and the rest are still listed."""
    _profile("bob").save(tmp_path)
    _write(tmp_path / "a-clips.npz", {**_HEADER, "clips": "many"})
    _write(tmp_path / "b-strings.npz", _HEADER, mean=np.array(["a"]), std=np.array(["b"]))
    _write(tmp_path / "c-negative.npz", {**_HEADER, "clips": -5})
    (tmp_path / "d-folder.npz").mkdir()
    _write(tmp_path / "renamed.npz", {**_HEADER, "name": "carol"})
    _write(tmp_path / "bad name.npz", {**_HEADER, "name": "x"})
    rows = {row["name"]: row for row in list_profiles(tmp_path)}
    assert sorted(rows) == ["a-clips", "b-strings", "bad name", "bob", "c-negative", "d-folder", "renamed"]
    assert "field 'clips' = 'many'" in rows["a-clips"]["error"]
    assert "field 'mean' holds <U1 values" in rows["b-strings"]["error"]
    assert "field 'clips' = -5" in rows["c-negative"]["error"]
    assert "not a file" in rows["d-folder"]["error"]
    assert "not a valid speaker name" in rows["bad name"]["error"]
    assert "error" not in rows["bob"] and rows["bob"]["clips"] == 10 and "note" not in rows["bob"]
    # Listed (and used by --speaker, removed) under its file name; the header's other name is pointed out.
    assert "error" not in rows["renamed"] and rows["renamed"]["note"] == "header names 'carol', file is 'renamed'"
    assert all("\n" not in row.get("error", "") for row in rows.values())


def test_list_profiles_survives_any_exception(tmp_path, monkeypatch):
    """Even an exception type the loader does not expect becomes a row, not a crash of the listing."""
    _profile("bob").save(tmp_path)
    _profile("dave").save(tmp_path)
    real = SpeakerProfile.load.__func__

    def flaky(cls, path, **kwargs):
        if Path(path).stem == "bob":
            raise RuntimeError("disk on fire\nsecond line")
        return real(cls, path, **kwargs)

    monkeypatch.setattr(SpeakerProfile, "load", classmethod(flaky))
    rows = list_profiles(tmp_path)
    assert [r["name"] for r in rows] == ["bob", "dave"] and "error" not in rows[1]
    assert rows[0]["error"] == f"{tmp_path / 'bob.npz'}: unreadable (RuntimeError: disk on fire second line)"


def test_cli_speakers_list_with_bad_profiles(tmp_path, capsys):
    """Every file gets a row; exit 1 when any profile is unreadable (0 when all are)."""
    _profile("bob").save(tmp_path)
    _write(tmp_path / "renamed.npz", {**_HEADER, "name": "carol"})
    assert main(["speakers", "list", "--speakers-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("bob ") and out[1].startswith("renamed ")
    assert "header names 'carol', file is 'renamed'" in out[1]
    _write(tmp_path / "neg.npz", {**_HEADER, "clips": -5})
    assert main(["speakers", "list", "--speakers-dir", str(tmp_path), "--json"]) == 1
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["name"] for r in rows] == ["bob", "neg", "renamed"] and "field 'clips' = -5" in rows[1]["error"]
    assert "1 of 3 profiles unreadable" in captured.err
    assert main(["speakers", "list", "--speakers-dir", str(tmp_path / "none")]) == 0


def test_adapted_head_needs_encoder_features():
    with pytest.raises(ConfigError, match="speakers.adapted_head=true"):
        preset("tiny").override({"speakers.adapted_head": True})


# --- the adapted head, end to end -------------------------------------------------

@pytest.fixture(scope="module")
def adapted_model(corpus, cache_dir, tmp_path_factory):
    from ser.cache import FeatureCache
    from ser.dataset import load_dataset
    from ser.inference import Recognizer
    from ser.training import fit_final

    clips = load_dataset(corpus)
    config = preset("accurate").override({"train.epochs": 4, "augment.copies": 1, "train.validation_speakers": 1,
                                          "speakers.adapted_head": True})
    model, history = fit_final(clips, config, cache=FeatureCache(cache_dir), jobs=1)
    adapted, _, norm = fit_final(clips, config, cache=FeatureCache(cache_dir), jobs=1, adapted=True)
    folder = tmp_path_factory.mktemp("adapted") / "model"
    Recognizer(model, config, adapted=adapted, speaker_norm=norm).save(folder, history=history)
    return folder


@needs_whisper
def test_adapted_model_folder(adapted_model, corpus, tmp_path, monkeypatch):
    """Both heads are saved and checksummed; enrol, predict with a speaker, adapt per group."""
    from ser.inference import Recognizer

    sums = (adapted_model / "SHA256SUMS").read_text()
    for name in ("adapted.keras", "adapted.onnx", "speakers.npz"):
        assert name in sums
    rec = Recognizer.load(adapted_model)
    files = sorted((corpus / "Actor_01").glob("*.wav"))
    profile = enrol(rec, "actor1", files[:4], folder=tmp_path)
    assert (tmp_path / "actor1.npz").exists() and profile.stats.n == 4
    import soundfile as sf

    in_memory = enrol(rec, "mem", [sf.read(f, dtype="float32") for f in files[:4]], save=False)
    np.testing.assert_allclose(in_memory.stats.mean, profile.stats.mean, atol=1e-5)
    assert not (tmp_path / "mem.npz").exists()
    plain = rec.predict_file(files[5])
    with_profile = rec.predict_file(files[5], speaker=rec.profile("actor1", folder=tmp_path))
    assert with_profile.scores != plain.scores
    monkeypatch.setenv("SER_SPEAKERS_DIR", str(tmp_path))  # a name is looked up in the default folder
    assert rec.predict_file(files[5], speaker="actor1").scores == with_profile.scores
    # The adapted head sees the clip standardised by the (shrunk, corrected) profile statistics.
    x = rec.frontend.file(files[5])[0][None]
    z = rec.speaker_norm.normalize(x, rec.profile("actor1", folder=tmp_path).stats, "enrol")
    expected = rec.adapted(z[..., None].astype(np.float32))[0]
    np.testing.assert_allclose(list(with_profile.scores.values()), expected, atol=1e-6)
    # Keras and ONNX Runtime agree on the adapted head too.
    keras_rec = Recognizer.load(adapted_model, runtime="keras")
    np.testing.assert_allclose(list(keras_rec.predict_file(files[5], speaker=profile).scores.values()),
                               list(with_profile.scores.values()), atol=1e-4)
    # Unlabelled adaptation: each group standardised by its own clips.
    paths = files + sorted((corpus / "Actor_04").glob("*.wav"))
    groups = ["a"] * len(files) + ["b"] * (len(paths) - len(files))
    results = rec.predict_files(paths, groups=groups, batch_size=5)
    assert [r.source for r in results] == [str(p) for p in paths]
    xa = np.stack([rec.frontend.file(p)[0] for p in files])
    # ... corrected for the emotions they hold (the inductive head's mean posterior over them).
    norm = rec.speaker_norm
    assert norm.class_offset.shape == (len(rec.classes), *xa.shape[1:])
    mix = np.mean([list(rec.predict_features(v).scores.values()) for v in xa], axis=0)
    corrected = norm.correct(SpeakerStats.of(xa), mix)
    np.testing.assert_allclose(rec.speaker_stats(xa).mean, corrected.mean, rtol=1e-5, atol=1e-5)
    za = norm.normalize(xa, corrected, "adapt")
    np.testing.assert_allclose(list(results[0].scores.values()), rec.adapted(za[:1, ..., None])[0], atol=1e-5)
    with pytest.raises(ValueError, match="speaker or groups"):
        rec.predict_files(paths, groups=groups, speaker=profile)
    with pytest.raises(ValueError, match="groups: 1 given"):
        rec.predict_files(paths, groups=["a"])


@needs_whisper
def test_adapted_folder_integrity(adapted_model, tmp_path, tampered):
    from ser.inference import Recognizer

    # A folder loaded and saved again keeps its networks byte for byte (a lean git history).
    again = Recognizer.load(adapted_model).save(tmp_path / "again")
    for name in ("model.keras", "model.onnx", "adapted.keras", "adapted.onnx", "encoder.npz"):
        assert (again / name).read_bytes() == (adapted_model / name).read_bytes(), name
    Recognizer.load(again)

    with pytest.raises(ModelError, match="speakers.npz: checksum mismatch"):
        Recognizer.load(tampered(adapted_model, "speakers.npz"))


@needs_whisper
def test_models_without_adapted_head_refuse_speakers(corpus, cache_dir, tmp_path):
    from ser.inference import Recognizer

    rec = Recognizer.load("fast")  # a spectral model: no adapted head
    assert rec.speaker_norm is None
    with pytest.raises(ModelError, match="no speaker-adapted head"):
        enrol(rec, "x", sorted(corpus.rglob("*.wav"))[:2], folder=tmp_path)
    with pytest.raises(ModelError, match="no speaker-adapted head"):
        rec.predict_files(sorted(corpus.rglob("*.wav"))[:2], groups=["a", "b"])


@needs_whisper
def test_bundled_model_has_an_adapted_head(ravdess, tmp_path):
    """The shipped model enrols a speaker from their calm clips and reads them relative to it."""
    from ser.inference import Recognizer

    rec = Recognizer.load()
    assert rec.speaker_norm is not None and rec.speaker_norm.prior.mean.shape == (7, 1024)
    actor = ravdess / "Actor_03"
    calm = sorted(actor.glob("03-01-0[12]-*.flac"))[:5]
    profile = enrol(rec, "actor03", calm, folder=tmp_path)
    assert (tmp_path / "actor03.npz").stat().st_size <= 64 * 1024
    clip = actor / "03-01-05-02-01-01-03.flac"
    p = rec.predict_file(clip, speaker=profile)
    assert p.scores != rec.predict_file(clip).scores and abs(sum(p.scores.values()) - 1) < 1e-4


@needs_whisper
def test_cli_speakers(adapted_model, corpus, tmp_path, capsys):
    folder = tmp_path / "profiles"
    files = [str(p) for p in sorted((corpus / "Actor_10").glob("*.wav"))]
    model = ["--model", str(adapted_model), "--speakers-dir", str(folder)]
    assert main(["speakers", "enrol", "bob", *files[:3], *model, "-q"]) == 0
    assert "enrolled from 3 clips" in capsys.readouterr().out
    assert main(["speakers", "list", "--speakers-dir", str(folder), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["name"] == "bob" and rows[0]["clips"] == 3 and rows[0]["bytes"] <= 64 * 1024
    assert main(["predict", files[4], "--speaker", "bob", "--json", "-q", *model]) == 0
    with_bob = json.loads(capsys.readouterr().out)
    assert main(["predict", files[4], "--json", "-q", "--model", str(adapted_model)]) == 0
    assert json.loads(capsys.readouterr().out)["scores"] != with_bob["scores"]
    # --adapt groups by a manifest's speaker column (labels optional), else by folder.
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,speaker\n" + "".join(f"{f},s1\n" for f in files))
    assert main(["predict", str(manifest), "--adapt", "--csv", "-q", "--model", str(adapted_model)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == len(files) + 1
    assert main(["predict", str(corpus / "Actor_10"), "--adapt", "--json", "-q",
                 "--model", str(adapted_model)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == len(files)
    # Errors: unknown speaker, bad name, removing twice.
    assert main(["predict", files[4], "--speaker", "nobody", "-q", *model]) == 1
    assert "no profile" in capsys.readouterr().err
    assert main(["speakers", "enrol", "../x", files[0], *model]) == 1
    assert "speaker '../x'" in capsys.readouterr().err
    assert main(["speakers", "remove", "bob", "--speakers-dir", str(folder)]) == 0
    assert main(["speakers", "remove", "bob", "--speakers-dir", str(folder)]) == 1
    assert "no profile for speaker 'bob'" in capsys.readouterr().err


@needs_whisper
def test_timeline_adapts_once_enough_speech_is_seen(adapted_model, corpus, tmp_path, capsys):
    import soundfile as sf

    from ser.inference import Recognizer
    from ser.timeline import ADAPT_AFTER, timeline

    rec = Recognizer.load(adapted_model)
    gap = np.zeros(16000, dtype=np.float32)
    clips = [sf.read(p, dtype="float32")[0] for p in sorted((corpus / "Actor_11").glob("*.wav"))[:8]]
    recording = tmp_path / "call.wav"
    sf.write(recording, np.concatenate([part for clip in clips for part in (gap, clip)] + [gap]), 16000)
    plain = timeline(recording, rec)
    adapted = timeline(recording, rec, adapt=True)
    assert len(plain) == len(adapted) == 8
    assert [s.scores for s in adapted[:ADAPT_AFTER - 1]] == [s.scores for s in plain[:ADAPT_AFTER - 1]]
    assert all(a.scores != p.scores for a, p in zip(adapted[ADAPT_AFTER - 1:], plain[ADAPT_AFTER - 1:]))
    # The segment after which adaptation starts is read with the statistics of all segments so far.
    from ser.speakers import SpeakerStats

    audio = sf.read(recording, dtype="float32")[0]
    feats = np.stack([rec.features(audio[round(s.start * 16000):round(s.end * 16000)], 16000) for s in adapted])

    last = rec.predict_features(feats[-1], speaker=SpeakerStats.of(feats))
    np.testing.assert_allclose(list(adapted[-1].scores.values()), list(last.scores.values()), atol=1e-4)
    assert main(["predict", "--timeline", str(recording), "--adapt", "--json", "-q", "--model",
                 str(adapted_model), "--out", str(tmp_path / "t")]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 8
    # Models without an adapted head refuse to adapt, with one clear line.
    assert main(["predict", "--timeline", str(recording), "--adapt", "-q", "--out", str(tmp_path / "u"),
                 "--model", "fast"]) == 1
    assert "no speaker-adapted head" in capsys.readouterr().err


def test_random_channel_is_fixed_per_seed():
    """The channel-shift benchmark's channels: the same seed, the same microphone and line."""
    from ser.augment import apply_condition, random_channel

    assert random_channel(3) == random_channel(3) and random_channel(3) != random_channel(4)
    t = np.arange(16000) / 16000
    y = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    a = apply_condition(y, "channel3", sr=16000, rng=np.random.default_rng(0))
    b = apply_condition(y, "channel3", sr=16000, rng=np.random.default_rng(0))
    c = apply_condition(y, "channel4", sr=16000, rng=np.random.default_rng(0))
    assert a.shape == y.shape and a.dtype == np.float32 and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c, atol=1e-3) and not np.allclose(a, y, atol=1e-3)
    with pytest.raises(ValueError, match="channelx"):
        apply_condition(y, "channelx", sr=16000, rng=np.random.default_rng(0))


@needs_whisper
def test_cli_train_with_adapted_head(corpus, cache_dir, tmp_path, capsys):
    """`ser train --set speakers.adapted_head=true` writes both heads; the card says so."""
    out = tmp_path / "model"
    assert main(["train", "--data", str(corpus), "--config", "accurate", "--out", str(out), "--cache", str(cache_dir),
                 "--set", "train.epochs=2", "--set", "augment.copies=0", "--set", "train.validation_speakers=0",
                 "--set", "train.early_stopping_patience=0", "--set", "train.restore_best=false",
                 "--set", "speakers.adapted_head=true", "-q", "--jobs", "1"]) == 0
    for name in ("adapted.keras", "adapted.onnx", "speakers.npz"):
        assert (out / name).is_file()
    assert "speaker-adapted head" in (out / "README.md").read_text()


def test_mix_correction_undoes_a_one_sided_speaker(tmp_path):
    """Class statistics learned on training speakers turn one emotion's statistics into all-emotion ones.

    Synthetic speakers: a speaker offset plus a per-class offset plus noise. Statistics of one class
    only are shifted by that class's offset; corrected with that class as the mix, the mean is back
    near the speaker's all-clip mean and the variance near the all-clip variance. The training mix
    changes nothing; the class statistics survive save and load; a norm without them corrects nothing.
    """
    rng = np.random.default_rng(0)
    classes = rng.normal(size=(3, 6)) * 2.0
    xs, spk, lab = [], [], []
    for s in range(8):
        offset = rng.normal(size=6) * 3.0
        for c in range(3):
            xs.append(offset + classes[c] + rng.normal(size=(20, 6)) * 0.5)
            spk += [f"s{s}"] * 20
            lab += [c] * 20
    x, spk, lab = np.concatenate(xs), np.array(spk), np.array(lab)
    norm = SpeakerNorm.fit(x, spk, np.zeros(len(x), bool), prior_weight=5.0, labels=lab, n_classes=3)
    new_offset = rng.normal(size=6) * 3.0
    one = new_offset + classes[2] + rng.normal(size=(20, 6)) * 0.5
    every = np.concatenate([new_offset + classes[c] + rng.normal(size=(20, 6)) * 0.5 for c in range(3)])
    raw, full = SpeakerStats.of(one), SpeakerStats.of(every)
    fixed = norm.correct(raw, np.array([0.0, 0.0, 1.0]))
    assert np.abs(fixed.mean - full.mean).mean() < 0.3 * np.abs(raw.mean - full.mean).mean()
    assert np.abs(np.log(fixed.var / full.var)).mean() < 0.5 * np.abs(np.log(raw.var / full.var)).mean()
    same = norm.correct(full, norm.class_prior)
    np.testing.assert_allclose(same.mean, full.mean) and np.testing.assert_allclose(same.var, full.var)
    back = SpeakerNorm.load(norm.save(tmp_path / "norm.npz"))
    np.testing.assert_allclose(back.class_offset, norm.class_offset, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(back.class_prior, norm.class_prior)
    plain = SpeakerNorm.fit(x, spk, np.zeros(len(x), bool), prior_weight=5.0)
    assert plain.class_offset is None and plain.correct(raw, np.ones(3)) is raw
    assert SpeakerNorm.load(plain.save(tmp_path / "old.npz")).class_offset is None
