"""Protocols by name: parsing, si6's refusal of partial data, fold digests, speaker adaptation end to end."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from ser.cache import FeatureCache
from conftest import needs_whisper
from ser.cli import main
from ser.config import Config, TrainConfig, preset
from ser.dataset import load_dataset
from ser.errors import ConfigError, ManifestError
from ser.protocols import Protocol, adaptation_rows, channel_condition, parse_protocol, run_adaptation
from ser.training import (
    _legacy_fold_digest,
    changed_settings,
    cross_validate,
    fold_digest,
    make_folds,
    prepare_features,
    si6_folds,
)



def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def real_subset(ravdess: Path, dest: Path, actors, *, per_emotion: int = 2) -> Path:
    """A folder of links to real RAVDESS clips: ``per_emotion`` clips (normal intensity, statement 1) per emotion."""
    for actor in actors:
        folder = dest / f"Actor_{actor:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for emotion in range(1, 9):
            for rep in range(1, per_emotion + 1):
                name = f"03-01-{emotion:02d}-01-01-{rep:02d}-{actor:02d}.flac"
                (folder / name).symlink_to(ravdess / f"Actor_{actor:02d}" / name)
    return dest


# --- names -----------------------------------------------------------------------

def test_protocol_names():
    """Every documented name parses to its fold scheme and kind; anything else is refused naming the choices."""
    assert parse_protocol("si6") == Protocol("si6", "si6")
    assert parse_protocol("si6-adapt-20") == Protocol("si6-adapt-20", "si6", "adapt", 20)
    assert parse_protocol("si6-enrol").kind == "enrol" and parse_protocol("si6-prior").adaptive
    assert parse_protocol("channel-shift") == Protocol("channel-shift", "si6", "channel-shift")
    assert parse_protocol("group-kfold-adapt-all") == Protocol("group-kfold-adapt-all", "group-kfold", "adapt-all")
    assert not parse_protocol("seed-split").adaptive
    assert parse_protocol("loco") == Protocol("loco", "loco")
    assert parse_protocol("loco-adapt-all") == Protocol("loco-adapt-all", "loco", "adapt-all")
    assert parse_protocol("si6+corpora") == Protocol("si6+corpora", "si6+corpora")
    assert parse_protocol("si6+corpora-adapt-20") == Protocol("si6+corpora-adapt-20", "si6+corpora", "adapt", 20)
    assert parse_protocol("si6-onesided") == Protocol("si6-onesided", "si6", "onesided")
    for bad in ("si6-adapt-1", "si6-adapt-05", "si6-adapt-", "loco-x", "seed-split-enrol", "si6-enroll",
                "si6+corpus"):
        with pytest.raises(ConfigError, match=re.escape(f"protocol='{bad}'") + ".*si6-adapt-K"):
            parse_protocol(bad)
    assert adaptation_rows([parse_protocol("si6"), parse_protocol("channel-shift")]) == [
        "si6", "channel-shift", "channel-shift:baseline", "channel-shift:clean"]
    # RAVDESS actors keep the channel the committed benchmark gave them; other speakers get a stable one.
    assert channel_condition("7") == "channel7"
    assert channel_condition("crema-d:1001") == channel_condition("crema-d:1001") != channel_condition("tess:OAF")


def test_cli_protocol_is_checked_at_parse_time(capsys):
    """A misspelt protocol is a usage error (exit 2) before any data is read."""
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--data", "nowhere", "--protocol", "si6-adapt-x", "--out", "o"])
    assert exit_.value.code == 2 and "si6-adapt-K" in capsys.readouterr().err


# --- si6 needs all 24 actors --------------------------------------------------------

def test_si6_refuses_partial_data_unless_asked(capsys, ravdess, tmp_path):
    """4 real actors: si6 is refused (naming the missing actors); --partial-folds runs and the report says partial."""
    data = real_subset(ravdess, tmp_path / "data", (1, 11, 4, 12), per_emotion=1)
    clips = load_dataset(data)
    with pytest.raises(ManifestError, match=r"si6 needs all 24 RAVDESS actors; 20 missing \(2, 3, 5,"):
        si6_folds(clips)
    assert [f.number for f in si6_folds(clips, partial=True)] == [1, 2]
    out = tmp_path / "run"
    argv = ["evaluate", "-q", "--data", data, "--config", "fast", "--set", "train.epochs=1", "--set",
            "train.validation_speakers=1", "--protocol", "si6", "--out", out, "--cache", tmp_path / "cache"]
    code, _, err = run(capsys, *argv)
    assert code == 1 and "--partial-folds" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # refused before anything is written
    code, stdout, _ = run(capsys, *argv, "--partial-folds")
    assert code == 0 and "protocol: si6 (partial: 2 of 6 folds)" in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["partial"] is True and report["actors_missing"][:3] == [2, 3, 5]
    assert "partial" in (out / "report.md").read_text().splitlines()[0]


# --- fold digests ---------------------------------------------------------------------

def test_fold_digest_ignores_settings_at_their_defaults(corpus, cache_dir, tmp_path):
    """A config field added at its default leaves digests unchanged; folds saved with the old digest are reused."""
    clips = load_dataset(corpus)
    config = preset("tiny").override({"train.epochs": 1})
    fold = make_folds(clips, "group-kfold", k=2)[0]
    # The same config with a new TrainConfig field at its default (what a later version adds).
    Newer = dataclasses.make_dataclass("TrainConfig", [("new_knob", int, dataclasses.field(default=3))],
                                       bases=(TrainConfig,), frozen=True, kw_only=True)
    newer = dataclasses.replace(config, train=Newer(**dataclasses.asdict(config.train)))
    assert changed_settings(newer) == changed_settings(config)
    assert fold_digest(newer, clips, fold) == fold_digest(config, clips, fold)
    assert changed_settings(config)["train"] == {"epochs": 1, "batch_size": 16, "learning_rate": 0.003}
    assert fold_digest(config.override({"train.seed": 7}), clips, fold) != fold_digest(config, clips, fold)
    # A fold finished by an earlier version (whole-config digest) is reused, not retrained.
    x, _ = prepare_features(clips, config, cache=FeatureCache(cache_dir), jobs=1)
    first = cross_validate(clips, config, [fold], x=x, out_dir=tmp_path)[0]
    path = tmp_path / f"fold_{fold.number}" / "result.json"
    saved = json.loads(path.read_text())
    assert saved["digest"] == fold_digest(config, clips, fold)
    saved.update(digest=_legacy_fold_digest(config, clips, fold), train_s=-1.0)
    path.write_text(json.dumps(saved))
    again = cross_validate(clips, config, [fold], x=x, out_dir=tmp_path)[0]
    assert again["resumed"] and again["train_s"] == -1.0 and again["probs"] == first["probs"]


# --- speaker adaptation end to end (encoder features, real clips) ----------------------

def small_encoder_config() -> Config:
    return preset("robust").override({"train.epochs": 2, "augment.copies": 0, "train.validation_speakers": 1,
                                      "train.early_stopping_patience": 0, "train.restore_best": False})


@needs_whisper
def test_adaptation_protocols_on_any_corpus_with_speakers(capsys, ravdess, tmp_path):
    """group-kfold-adapt-5 from the CLI (baseline beside it, resumed on a rerun); enrol, prior and channel shift
    from the library, each with the inductive head on the same clips."""
    data = real_subset(ravdess, tmp_path / "data", (2, 3, 5, 6), per_emotion=1)
    cache = tmp_path / "cache"
    out = tmp_path / "run"
    argv = ["evaluate", "-q", "--data", data, "--config", "robust", "--set", "train.epochs=2", "--set",
            "augment.copies=0", "--set", "train.validation_speakers=1", "--set", "train.early_stopping_patience=0",
            "--set", "train.restore_best=false", "--protocol", "group-kfold-adapt-5", "--folds", "2", "--out", out,
            "--cache", cache]
    code, stdout, _ = run(capsys, *argv)
    assert code == 0 and "inductive head on the same clips: accuracy" in stdout and "(draws)" in stdout
    report = json.loads((out / "report.json").read_text())
    pooled = report["summary"]["pooled"]
    assert report["adaptation"] and report["config"]["speakers"]["adapted_head"] is True
    assert pooled["n"] == 4 * (8 - 5) and len(pooled["draws"]) == 5 and report["baseline"]["n"] == pooled["n"]
    assert 0 <= pooled["uar"] <= 1 and sum(map(sum, pooled["confusion"])) == 5 * pooled["n"]
    saved = json.loads((out / "fold_1" / "result.json").read_text())
    # The adapted row, its baseline, and the same adapted head with statistics not corrected for their mix.
    assert set(saved["rows"]) == {"group-kfold-adapt-5", "group-kfold-adapt-5:baseline",
                                  "group-kfold-adapt-5:uncorrected"}
    assert report["uncorrected"]["n"] == pooled["n"] and "not corrected for their emotion mix" in stdout
    code, _, _ = run(capsys, *argv)
    again = json.loads((out / "report.json").read_text())
    assert code == 0 and all(f["resumed"] for f in again["summary"]["folds"])
    assert again["summary"]["pooled"]["uar"] == pooled["uar"]

    clips = load_dataset(data)
    names = ["group-kfold", "group-kfold-prior", "group-kfold-enrol", "group-kfold-channel-shift"]
    result = run_adaptation(clips, small_encoder_config(), names, make_folds(clips, "group-kfold", k=2),
                            cache=FeatureCache(cache), jobs=2)["protocols"]
    assert result["group-kfold"]["pooled"]["n"] == 32 and "baseline" not in result["group-kfold"]
    assert result["group-kfold-prior"]["baseline"]["uar"] == pytest.approx(result["group-kfold"]["pooled"]["uar"])
    enrol = result["group-kfold-enrol"]
    assert enrol["pooled"]["n"] == 4 * (8 - 2)  # scored on the clips that are not neutral or calm
    shift = result["group-kfold-channel-shift"]
    assert shift["clean"]["uar"] == pytest.approx(result["group-kfold"]["pooled"]["uar"])
    assert shift["pooled"]["n"] == shift["baseline"]["n"] == 32
    with pytest.raises(ConfigError, match="speaker adaptation needs encoder features"):
        run_adaptation(clips, preset("fast"), ["group-kfold-enrol"], make_folds(clips, "group-kfold", k=2))


def test_adaptation_needs_encoder_features_before_anything_is_written(corpus, tmp_path):
    from ser.evaluation import evaluate

    with pytest.raises(ConfigError, match="protocol=si6-enrol: speaker adaptation needs encoder features"):
        evaluate(load_dataset(corpus), preset("tiny"), protocol="si6-enrol", out_dir=tmp_path / "r",
                 partial_folds=True)
    assert not (tmp_path / "r").exists()


# --- several corpora: loco and si6+corpora ------------------------------------------------------

def _clips(spec):
    """Synthetic clips: {corpus: {speaker: [labels]}} (no audio; fold logic only)."""
    from ser.dataset import Clip

    out = []
    for corpus, speakers in spec.items():
        for speaker, labels in speakers.items():
            for i, label in enumerate(labels):
                name = speaker if corpus == "ravdess" else f"{corpus}:{speaker}"
                out.append(Clip(Path(f"/{corpus}/{speaker}_{i}.wav"), label, name, {"corpus": corpus}))
    return out


def test_loco_folds_leave_each_corpus_out_whole():
    """One fold per corpus: its every clip and speaker on the test side, none in training; scored restricted."""
    import numpy as np

    from ser.training import corpora_of, speakers_of

    clips = _clips({"ravdess": {str(a): ["calm", "sad"] for a in range(1, 5)},
                    "emovo": {"m1": ["sad", "disgust"], "f1": ["angry"]},
                    "turev": {"1157": ["calm", "angry"]}})
    folds = make_folds(clips, "loco")
    corpora, speakers = corpora_of(clips), speakers_of(clips)
    assert [f.corpus for f in folds] == ["emovo", "ravdess", "turev"]
    for f in folds:
        assert f.restrict and set(corpora[f.test]) == {f.corpus} and f.corpus not in set(corpora[f.train])
        assert not set(speakers[f.test]) & set(speakers[f.train])
        assert sorted(np.concatenate([f.train, f.test]).tolist()) == list(range(len(clips)))
        assert set(f.test_speakers) == set(speakers[f.test])
    with pytest.raises(ManifestError, match="loco needs clips of two or more corpora; found only emovo"):
        make_folds([c for c in clips if c.meta["corpus"] == "emovo"], "loco")
    generic = [dataclasses.replace(clips[0], meta={})] + clips[1:]
    with pytest.raises(ManifestError, match=r"loco: 1 clips do not say their corpus"):
        make_folds(generic, "loco")


def test_si6_corpora_folds_keep_other_corpora_in_training_and_test_actors_out():
    """si6+corpora: the si6 folds; every other corpus's clip trains in every fold; test actors never train."""
    import numpy as np

    from ser.training import corpora_of, speakers_of

    ravdess = _clips({"ravdess": {str(a): ["neutral", "sad"] for a in range(1, 25)}})
    clips = ravdess + _clips({"ased": {"01": ["sad", "angry"]}, "emovo": {"m2": ["happy"]}})
    folds = make_folds(clips, "si6+corpora")
    corpora, speakers = corpora_of(clips), speakers_of(clips)
    others = np.flatnonzero(corpora != "ravdess")
    assert [f.test_speakers for f in folds] == [f.test_speakers for f in si6_folds(ravdess)]
    for f in folds:
        assert set(others) <= set(f.train) and set(corpora[f.test]) == {"ravdess"} and not f.restrict
        assert not set(speakers[f.test]) & set(speakers[f.train])
    with pytest.raises(ManifestError, match=r"si6\+corpora needs RAVDESS and at least one other corpus"):
        make_folds(ravdess, "si6+corpora")


@needs_whisper
def test_onesided_and_loco_adaptation_rows(ravdess, tmp_path):
    """Real clips, tiny heads: si6-onesided scores every clip of a speaker once per emotion, with baseline
    and uncorrected rows; a restricted fold never predicts a label the test corpus lacks."""
    import numpy as np

    from ser.protocols import fold_predictions
    from ser.training import Fold, corpora_of, speakers_of

    data = real_subset(ravdess, tmp_path / "data", (1, 2, 3, 4), per_emotion=2)
    clips = load_dataset(data)
    config = preset("accurate").override({"train.epochs": 2, "train.validation_speakers": 1,
                                          "speakers.adapted_head": True, "augment.copies": 0})
    x, _ = prepare_features(clips, config, cache=FeatureCache(tmp_path / "cache"))
    from ser.labels import encode

    y = encode([c.label for c in clips], config.classes)
    speakers, corpora = speakers_of(clips), corpora_of(clips)
    test = np.flatnonzero(speakers == "4")
    fold = Fold(1, np.flatnonzero(speakers != "4"), test, ("4",))
    rows, _ = fold_predictions(config, x, y, speakers, fold, [parse_protocol("si6-onesided")], corpora=corpora)
    assert len(rows["si6-onesided"]) == 8  # one draw per emotion, 2 clips each
    for key in ("si6-onesided", "si6-onesided:baseline", "si6-onesided:uncorrected"):
        assert all(sorted(pos) == list(range(test.size)) for pos, _ in rows[key])
    # A restricted fold: pretend actor 4 is a corpus without calm and surprised.
    keep = np.flatnonzero(~((speakers == "4") & np.isin(y, [1, 7])))
    sub = [clips[i] for i in keep]
    sub = [dataclasses.replace(c, meta={**c.meta, "corpus": "other"}) if c.speaker == "4" else c for c in sub]
    ys, xs = y[keep], x[keep]
    sp, co = speakers_of(sub), corpora_of(sub)
    fold = Fold(1, np.flatnonzero(sp != "4"), np.flatnonzero(sp == "4"), ("4",), True, "other")
    rows, _ = fold_predictions(config, xs, ys, sp, fold, [parse_protocol("loco"), parse_protocol("loco-adapt-all")],
                               corpora=co)
    for key in ("loco", "loco-adapt-all", "loco-adapt-all:baseline"):
        assert not set(rows[key][0][1]) & {1, 7}


def test_loco_through_the_cli(capsys, ravdess, tmp_path):
    """`ser evaluate --protocol loco` on two real corpora: one fold per corpus, the left-out corpus's clips
    predicted among its own labels only (EMOVO has no calm), a report like every protocol's."""
    import numpy as np

    emovo = Path(__file__).resolve().parents[2] / "shared" / "data" / "emovo"
    if not emovo.is_dir():
        pytest.skip("shared EMOVO copy not found")
    rav = real_subset(ravdess, tmp_path / "ravdess", (1, 2, 3), per_emotion=1)
    emo = tmp_path / "emovo"
    for actor in ("f1", "m1", "m2"):
        (emo / actor).mkdir(parents=True)
        for clip in sorted((emovo / actor).glob("*-b1.ogg")):
            (emo / actor / clip.name).symlink_to(clip)
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "evaluate", "-q", "--data", rav, "--data", emo, "--config", "fast", "--set",
                          "train.epochs=1", "--set", "train.validation_speakers=1", "--set", "augment.copies=0",
                          "--protocol", "loco", "--out", out, "--cache", tmp_path / "cache")
    assert code == 0 and "protocol: loco" in stdout
    report = json.loads((out / "report.json").read_text())
    assert [len(f["test_speakers"]) for f in report["summary"]["folds"]] == [3, 3]
    fold = json.loads((out / "fold_1" / "result.json").read_text())  # emovo, first in corpus order
    assert fold["corpus"] == "emovo" and all("/emovo/" in p for p in fold["paths"]) and len(fold["paths"]) == 21
    from ser.evaluation import fold_predicted

    assert 1 not in set(fold_predicted(fold).tolist())  # never calm
    assert np.asarray(fold["allowed"])[:, 1].sum() == 0
