"""Splits are speaker-independent and faithful; fitting learns; cross-validation resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ser.cache import FeatureCache
from ser.config import preset
from ser.dataset import load_dataset
from ser.errors import ConfigError, ManifestError
from ser.labels import encode
from ser.training import (SI6_FOLDS, cross_validate, expand_grid, fit, grid_search, group_kfold, make_folds,
                          pick_validation, predict_proba, prepare_features, seed_split, si6_folds, speakers_of)


def fast_config(**changes):
    base = {"train.epochs": 2, "train.batch_size": 16}
    base.update(changes)
    return preset("tiny").override(base)


def test_si6_folds_are_the_emobox_actor_sets_and_disjoint(corpus):
    """Each si6 fold tests exactly its EmoBox actors and trains on none of them."""
    clips = load_dataset(corpus)
    speakers = speakers_of(clips)
    folds = si6_folds(clips, partial=True)
    assert [f.number for f in folds] == [1, 2]  # the corpus holds actors of folds 1 and 2 only
    for fold in folds:
        expected = {str(a) for a in SI6_FOLDS[fold.number - 1]}
        assert set(speakers[fold.test]) <= expected
        assert not set(speakers[fold.train]) & expected
        assert fold.train.size + fold.test.size == len(clips)


def test_si6_on_full_ravdess_covers_every_clip_once(ravdess):
    """On the real corpus, the 6 test folds partition all 1440 clips, 240 each."""
    clips = load_dataset(ravdess)
    folds = si6_folds(clips)
    tested = np.concatenate([f.test for f in folds])
    assert len(folds) == 6 and sorted(tested.tolist()) == list(range(1440))
    assert all(f.test.size == 240 for f in folds)


def test_si6_needs_ravdess_actors(tmp_path):
    """A corpus with no RAVDESS actor ids is refused with a clear error."""
    import soundfile as sf
    from conftest import tone

    sf.write(tmp_path / "a.wav", tone("happy"), 16000)
    (tmp_path / "m.csv").write_text("path,label,speaker\na.wav,happy,spk99\n")
    with pytest.raises(ManifestError, match="si6 needs RAVDESS actors"):
        si6_folds(load_dataset(tmp_path / "m.csv"))


def test_seed_split_matches_the_original_notebook(corpus):
    """seed-split is sklearn's stratified train_test_split(random_state=42) over clips sorted by path."""
    from sklearn.model_selection import train_test_split

    clips = load_dataset(corpus)
    (fold,) = seed_split(clips)
    paths = sorted(str(c.path) for c in clips)
    labels = [c.label for c in sorted(clips, key=lambda c: str(c.path))]
    train, test = train_test_split(paths, test_size=0.2, stratify=labels, random_state=42)
    assert sorted(str(clips[i].path) for i in fold.test) == sorted(test)
    assert sorted(str(clips[i].path) for i in fold.train) == sorted(train)


def test_group_kfold_never_puts_a_speaker_on_both_sides(corpus):
    """Like scikit-learn's test_group_kfold: test speakers never appear in training."""
    clips = load_dataset(corpus)
    speakers = speakers_of(clips)
    folds = group_kfold(clips, k=3)
    assert len(folds) == 3
    for fold in folds:
        assert not set(speakers[fold.train]) & set(speakers[fold.test])
    assert sorted(np.concatenate([f.test for f in folds]).tolist()) == list(range(len(clips)))
    with pytest.raises(ConfigError, match="folds=7"):
        group_kfold(clips, k=7)
    with pytest.raises(ConfigError, match="protocol='nope'"):
        make_folds(clips, "nope")


def test_validation_speakers_come_from_the_training_side(corpus):
    """pick_validation draws whole speakers, only from the given training indices, reproducibly."""
    clips = load_dataset(corpus)
    speakers = speakers_of(clips)
    fold = si6_folds(clips, partial=True)[0]
    fit_idx, val_idx = pick_validation(speakers, fold.train, n=1, seed=42)
    assert set(val_idx) <= set(fold.train) and not set(val_idx) & set(fit_idx)
    assert len(set(speakers[val_idx])) == 1 and not set(speakers[val_idx]) & set(speakers[fit_idx])
    again = pick_validation(speakers, fold.train, n=1, seed=42)
    assert np.array_equal(val_idx, again[1])
    with pytest.raises(ConfigError, match="validation_speakers=9"):
        pick_validation(speakers, fold.train, n=9, seed=0)


def test_tiny_model_learns_and_is_reproducible(corpus, cache_dir):
    """Training accuracy rises on a tiny overfit run; the same seed gives the same probabilities."""
    clips = load_dataset(corpus)
    config = preset("tiny").override({"train.epochs": 12})
    x, aug = prepare_features(clips, config, cache=FeatureCache(cache_dir), jobs=1)
    y = encode([c.label for c in clips])
    train = np.arange(len(clips))
    model, history = fit(config, x, y, speakers_of(clips), train)
    assert history["accuracy"][-1] > history["accuracy"][0] + 0.2
    assert (predict_proba(model, x).argmax(axis=1) == y).mean() > 0.5
    model2, _ = fit(config, x, y, speakers_of(clips), train)
    np.testing.assert_allclose(predict_proba(model, x[:8]), predict_proba(model2, x[:8]), atol=1e-5)


def test_fit_with_validation_augmentation_and_masks(corpus, cache_dir):
    """The full recipe path: augmented copies, spectrogram masks, early stopping on a validation speaker."""
    clips = load_dataset(corpus)
    config = fast_config(**{"augment.copies": 1, "augment.time_masks": 1, "augment.freq_masks": 1,
                            "train.validation_speakers": 1, "train.early_stopping_patience": 1,
                            "train.restore_best": True, "train.epochs": 4, "model.input_normalization": True})
    x, aug = prepare_features(clips, config, cache=FeatureCache(cache_dir), jobs=1)
    assert aug.shape == (len(clips), 1, *x.shape[1:])
    y = encode([c.label for c in clips])
    model, history = fit(config, x, y, speakers_of(clips), np.arange(len(clips)), augmented=aug)
    assert "val_loss" in history and len(history["validation_speakers"]) == 1
    assert 1 <= history["best_epoch"] <= len(history["loss"]) <= 4
    probs = predict_proba(model, x[:4])
    assert probs.shape == (4, 8) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)


def test_cross_validate_saves_folds_and_resumes(corpus, cache_dir, tmp_path):
    """Finished folds are written to disk and reused, not retrained, by a second identical run."""
    clips = load_dataset(corpus)
    config = fast_config()
    folds = make_folds(clips, "si6", partial=True)
    x, _ = prepare_features(clips, config, cache=FeatureCache(cache_dir), jobs=1)
    first = cross_validate(clips, config, folds, x=x, out_dir=tmp_path)
    saved = json.loads((tmp_path / "fold_1" / "result.json").read_text())
    assert saved["test_speakers"] == ["1", "11", "20", "21"] and len(saved["probs"]) == len(folds[0].test)
    second = cross_validate(clips, config, folds, x=x, out_dir=tmp_path)
    assert [r["probs"] for r in first] == [r["probs"] for r in second]
    assert [r["train_s"] for r in first] == [r["train_s"] for r in second]  # not retrained
    other = cross_validate(clips, config.override({"train.seed": 7}), folds[:1], x=x, out_dir=tmp_path)
    assert other[0]["digest"] != first[0]["digest"]


def test_grid_search_chooses_on_inner_folds_only(corpus, cache_dir):
    """The grid is scored on training-side speakers; the table lists every candidate, best first."""
    clips = load_dataset(corpus)
    fold = si6_folds(clips, partial=True)[0]
    config = fast_config()
    table = grid_search(clips, config, {"train.learning_rate": [0.003, 0.0001]}, train=fold.train, inner_folds=2,
                        cache=FeatureCache(cache_dir))
    assert len(table["rows"]) == 2
    assert table["rows"][0]["uar_mean"] >= table["rows"][1]["uar_mean"]
    assert table["best_config"]["train"]["learning_rate"] == table["best_params"]["train.learning_rate"]
    with pytest.raises(ConfigError, match="grid.train.epochs"):
        expand_grid({"train.epochs": []})
    with pytest.raises(ConfigError, match="unknown config field"):
        grid_search(clips, config, {"train.nope": [1]}, train=fold.train, inner_folds=2)


def test_ensemble_averages_members_and_reloads(corpus, cache_dir, tmp_path):
    """train.ensemble=3 trains 3 seeds and averages them in one safe-mode-loadable model."""
    from ser.inference import Recognizer

    clips = load_dataset(corpus)
    config = fast_config(**{"train.ensemble": 3})
    x, _ = prepare_features(clips, config, cache=FeatureCache(cache_dir), jobs=1)
    y = encode([c.label for c in clips])
    model, history = fit(config, x, y, speakers_of(clips), np.arange(len(clips)))
    assert len(history["members"]) == 3
    members = [model.get_layer(f"member{k}") for k in range(3)]
    expected = np.mean([np.asarray(m(x[:4, ..., None])) for m in members], axis=0)
    np.testing.assert_allclose(predict_proba(model, x[:4]), expected, atol=1e-6)
    folder = Recognizer(model, config).save(tmp_path / "ens")
    np.testing.assert_allclose(predict_proba(Recognizer.load(folder).model, x[:4]), expected, atol=1e-6)
