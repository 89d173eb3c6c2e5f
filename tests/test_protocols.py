"""Protocols by name: parsing, si6's refusal of partial data, fold digests, speaker adaptation end to end."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ser.cache import FeatureCache
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

WHISPER = Path(__file__).resolve().parents[2] / "shared" / "models" / "whisper-base"
needs_whisper = pytest.mark.skipif(not (WHISPER / "model.bin").exists(), reason="whisper-base not in ../shared/models")


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
    for bad in ("si6-adapt-1", "si6-adapt-05", "si6-adapt-", "loco", "seed-split-enrol", "si6-enroll"):
        with pytest.raises(ConfigError, match=f"protocol='{bad}'.*si6-adapt-K"):
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
    assert set(saved["rows"]) == {"group-kfold-adapt-5", "group-kfold-adapt-5:baseline"}
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
