"""Tests for ser.config: validation, presets, JSON round trips, overrides and resolve()."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ser.config import (
    PRESETS,
    AudioConfig,
    AugmentConfig,
    Config,
    FeatureConfig,
    TrainConfig,
    preset,
    resolve,
)
from ser.errors import ConfigError
from ser.labels import EMOTIONS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_validates_and_round_trips(name, tmp_path):
    """Every preset builds, is named after itself, and survives dict and JSON file round trips."""
    cfg = preset(name)
    assert isinstance(cfg, Config) and cfg.name == name
    assert Config.from_dict(cfg.to_dict()) == cfg
    path = cfg.save(tmp_path / f"{name}.json")
    assert json.loads(path.read_text())["name"] == name
    loaded = Config.load(path)
    assert loaded == cfg
    assert isinstance(loaded.model.filters, tuple) and isinstance(loaded.classes, tuple)


def test_seed_cnn_is_the_original_recipe():
    """seed_cnn reproduces the notebook: 22050 Hz, 3 s, 40 MFCC, (32,64,128), Adam 7e-4, ..."""
    cfg = preset("seed_cnn")
    assert cfg.audio.sample_rate == 22050 and cfg.audio.duration == 3.0
    assert cfg.features.kind == "mfcc" and cfg.features.n_mfcc == 40
    assert cfg.features.n_fft == 2048 and cfg.features.hop_length == 512  # librosa defaults
    assert cfg.features.normalize == "clip"
    assert cfg.model.filters == (32, 64, 128)
    assert cfg.train.learning_rate == 7e-4
    assert cfg.train.label_smoothing == 0.1
    assert cfg.train.batch_size == 32 and cfg.train.epochs == 100
    assert cfg.train.class_weight == "balanced" and cfg.train.seed == 42
    assert cfg.augment.copies == 0 and cfg.augment.time_masks == 0 and cfg.augment.freq_masks == 0
    assert cfg.train.early_stopping_patience == 0 and not cfg.train.restore_best
    assert cfg.classes == EMOTIONS


def test_config_is_frozen():
    """Configs cannot be mutated after validation."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset("tiny").train.epochs = 5  # type: ignore[misc]


def test_override_dotted_keys():
    """override() replaces nested fields by dotted key, coerces lists, and leaves the original alone."""
    base = preset("tiny")
    cfg = base.override({"train.epochs": 5, "features.kind": "mfcc", "features.n_mfcc": 20,
                         "model.filters": [4, 8, 16], "name": "mine"})
    assert cfg.train.epochs == 5 and cfg.features.kind == "mfcc" and cfg.features.n_mfcc == 20
    assert cfg.model.filters == (4, 8, 16) and cfg.name == "mine"
    assert cfg.audio == base.audio  # untouched sections kept
    assert base.train.epochs == 3 and base.features.kind == "logmel"


@pytest.mark.parametrize("key", ["train.nope", "nope", "nope.epochs", "train.epochs.deeper", "name.x"])
def test_override_unknown_field(key):
    """Unknown dotted keys are refused, naming the key."""
    with pytest.raises(ConfigError, match=rf"^{key}: unknown config field"):
        preset("tiny").override({key: 1})


def test_from_dict_unknown_field():
    """An unknown field in a (nested) dictionary is refused with its dotted name."""
    with pytest.raises(ConfigError, match=r"^bogus: unknown config field"):
        Config.from_dict({"bogus": 1})
    with pytest.raises(ConfigError, match=r"^train\.epoch: unknown config field"):
        Config.from_dict({"train": {"epoch": 5}})


@pytest.mark.parametrize(("changes", "pattern"), [
    ({"train.epochs": 0}, r"train\.epochs=0: expected a value >= 1"),
    ({"train.epochs": "5"}, r"train\.epochs='5': expected an integer"),
    ({"train.epochs": 5.0}, r"train\.epochs=5\.0: expected an integer"),
    ({"train.epochs": True}, r"train\.epochs=True: expected an integer"),
    ({"train.learning_rate": 0}, r"train\.learning_rate=0\.0: expected a value > 0"),
    ({"train.learning_rate": "fast"}, r"train\.learning_rate='fast': expected a number"),
    ({"train.label_smoothing": 0.9}, r"train\.label_smoothing=0\.9: expected a value <= 0\.5"),
    ({"train.restore_best": 1}, r"train\.restore_best=1: expected true or false"),
    ({"audio.sample_rate": 500}, r"audio\.sample_rate=500"),
    ({"audio.duration": 0}, r"audio\.duration=0\.0"),
    ({"audio.max_duration": 0.05}, r"audio\.max_duration=0\.05"),
    ({"features.n_mfcc": 64, "features.kind": "mfcc", "features.n_mels": 32}, r"features\.n_mfcc=64"),
    ({"features.hop_length": 4096}, r"features\.hop_length=4096"),
    ({"model.filters": []}, r"model\.filters=\(\)"),
    ({"model.filters": "32"}, r"model\.filters='32': expected a list"),
    ({"model.filters": [32, 0]}, r"model\.filters=0"),
    ({"augment.copies": -1}, r"augment\.copies=-1"),
    ({"augment.noise_p": 1.5}, r"augment\.noise_p=1\.5"),
    ({"classes": ["happy", "bored"]}, r"classes=\['happy', 'bored'\]"),
    ({"classes": ["happy", "happy"]}, r"classes="),
    ({"classes": ["happy"]}, r"classes="),
    ({"audio": 5}, r"audio=5: expected an object"),
    ({"name": 3}, r"name=3: expected a string"),
])
def test_bad_values_name_the_field(changes, pattern):
    """Out-of-range or wrongly typed values raise ConfigError naming the field and the value."""
    with pytest.raises(ConfigError, match=pattern):
        preset("tiny").override(changes)


@pytest.mark.parametrize(("key", "value"), [("features.kind", "wav2vec"), ("features.normalize", "global"),
                                            ("train.class_weight", "auto"), ("model.architecture", "rnn")])
def test_wrong_literal(key, value):
    """A value outside a Literal's choices is refused, listing the choices."""
    with pytest.raises(ConfigError, match=rf"{key}='{value}': expected one of \["):
        preset("tiny").override({key: value})


def test_early_stopping_needs_validation_speakers():
    """Early stopping or restore_best without validation speakers is refused; with them it is fine."""
    with pytest.raises(ConfigError, match=r"train\.validation_speakers=0"):
        TrainConfig(early_stopping_patience=5)
    with pytest.raises(ConfigError, match=r"train\.validation_speakers=0"):
        TrainConfig(restore_best=True)
    with pytest.raises(ConfigError, match=r"train\.validation_speakers=0"):
        preset("cnn").override({"train.validation_speakers": 0})
    assert TrainConfig(early_stopping_patience=5, validation_speakers=2).early_stopping_patience == 5


def test_int_is_accepted_for_float_fields():
    """JSON integers are valid floats and are stored as float."""
    cfg = preset("tiny").override({"train.learning_rate": 1, "audio.duration": 2})
    assert cfg.train.learning_rate == 1.0 and isinstance(cfg.train.learning_rate, float)
    assert cfg.audio.duration == 2.0


@pytest.mark.parametrize("changes", [{"train.learning_rate": float("nan")},
                                     {"train.label_smoothing": float("nan")},
                                     {"augment.noise_max_amplitude": float("inf")}])
def test_non_finite_numbers_are_refused(changes):
    """NaN / infinite numbers (valid in Python's JSON) must not pass validation."""
    with pytest.raises(ConfigError, match="expected a finite number"):
        preset("tiny").override(changes)


def test_subconfigs_validate_directly():
    """Validation runs on each section's constructor, not only through from_dict."""
    with pytest.raises(ConfigError, match=r"audio\.sample_rate=0"):
        AudioConfig(sample_rate=0)
    with pytest.raises(ConfigError, match=r"features\.n_mels=4"):
        FeatureConfig(n_mels=4)
    with pytest.raises(ConfigError, match=r"augment\.stretch_min=0\.2"):
        AugmentConfig(stretch_min=0.2)


def test_partial_dict_uses_defaults():
    """A partial dictionary fills the rest from the defaults."""
    cfg = Config.from_dict({"train": {"epochs": 7}})
    assert cfg.train.epochs == 7 and cfg.train.batch_size == TrainConfig().batch_size
    assert cfg.audio == AudioConfig()


def test_resolve_preset_name():
    """resolve() maps a preset name to the preset."""
    assert resolve("cnn") == preset("cnn")


def test_resolve_json_file(tmp_path):
    """resolve() loads a JSON config file, with or without the .json suffix."""
    cfg = preset("tiny").override({"train.epochs": 9, "name": "mine"})
    path = cfg.save(tmp_path / "mine.json")
    assert resolve(str(path)) == cfg
    other = tmp_path / "mine.cfg"
    other.write_text(path.read_text())
    assert resolve(str(other)) == cfg


def test_resolve_garbage():
    """A string that is neither a preset nor a file is refused, listing the presets."""
    presets = r"\(accurate, cnn, fast, robust, seed_cnn, tiny\)"
    with pytest.raises(ConfigError, match=r"config='fastest': neither a preset " + presets):
        resolve("fastest")


def test_unknown_preset():
    """preset() names the unknown preset and the known ones."""
    with pytest.raises(ConfigError, match=r"preset='big': unknown; expected one of"):
        preset("big")


def test_load_errors(tmp_path):
    """Missing, unparsable and non-object JSON files give ConfigError naming the file."""
    with pytest.raises(ConfigError, match=r"missing\.json: config file not found"):
        resolve(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad\.json: not a readable JSON config"):
        Config.load(bad)
    arr = tmp_path / "list.json"
    arr.write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"list\.json: expected a JSON object"):
        Config.load(arr)
    with pytest.raises(ConfigError, match=r"not a readable JSON config"):
        resolve(str(tmp_path))  # an existing folder


def test_load_validates(tmp_path):
    """A hand-written JSON file with a bad value is refused on load."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"train": {"epochs": 0}}))
    with pytest.raises(ConfigError, match=r"train\.epochs=0"):
        Config.load(path)


def test_min_duration_cannot_exceed_duration():
    """A minimum clip length above the analysed length would refuse every clip; it is refused instead."""
    with pytest.raises(ConfigError, match=r"audio\.min_duration=5\.0"):
        AudioConfig(duration=1.0, min_duration=5.0)


def test_parse_overrides():
    """KEY=VALUE strings become typed overrides; malformed ones are refused naming the item."""
    from ser.config import parse_overrides

    assert parse_overrides(["train.epochs=5", "features.kind=logmel", "model.filters=[8, 16]"]) == {
        "train.epochs": 5, "features.kind": "logmel", "model.filters": [8, 16]}
    with pytest.raises(ConfigError, match="--set 'epochs'"):
        parse_overrides(["epochs"])
