"""Training on corpora that do not share a label set: masked loss, corpus/speaker weights, label masks."""

from __future__ import annotations

import numpy as np
import pytest

from ser.config import preset
from ser.training import (
    corpora_of,
    fit,
    is_mixed,
    label_masks,
    mixed_weights,
    predict_proba,
    restricted_argmax,
)


def test_masked_crossentropy_ignores_absent_labels():
    """The loss is -log of the target's probability renormalised over the allowed labels only."""
    from keras import ops

    from ser.models import masked_accuracy, masked_crossentropy

    probs = np.array([[0.1, 0.2, 0.6, 0.1], [0.4, 0.3, 0.2, 0.1]], dtype=np.float32)
    target = np.array([[0, 1, 0, 0], [1, 0, 0, 0]], dtype=np.float32)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=np.float32)
    loss = ops.convert_to_numpy(masked_crossentropy(np.concatenate([target, mask], 1), probs))
    np.testing.assert_allclose(loss, [-np.log(0.2 / 0.3), -np.log(0.4)], rtol=1e-5)
    # Moving probability between labels the clip's corpus lacks changes nothing.
    moved = np.array([[0.1, 0.2, 0.1, 0.6], [0.4, 0.3, 0.2, 0.1]], dtype=np.float32)
    np.testing.assert_allclose(ops.convert_to_numpy(masked_crossentropy(np.concatenate([target, mask], 1), moved)),
                               loss, rtol=1e-6)
    # Accuracy among the allowed labels: row 1's argmax (label 2) is not allowed, label 1 is then the answer.
    acc = ops.convert_to_numpy(masked_accuracy(np.concatenate([target, mask], 1), probs))
    np.testing.assert_array_equal(acc, [1.0, 1.0])


def test_mixed_weights_balance_corpora_and_speakers():
    """Every corpus weighs the same, every speaker the same within it; mean weight 1."""
    corpora = np.array(["a"] * 40 + ["b"] * 10)
    speakers = np.array(["a:1"] * 30 + ["a:2"] * 10 + ["b:1"] * 5 + ["b:2"] * 5)
    y = np.array([0, 1] * 25)
    idx = np.arange(50)
    w = mixed_weights(y, corpora, speakers, idx)
    assert w.dtype == np.float32 and w.mean() == pytest.approx(1.0)
    assert w[corpora == "a"].sum() == pytest.approx(w[corpora == "b"].sum())
    for corpus in "ab":
        totals = [w[speakers == s].sum() for s in np.unique(speakers[corpora == corpus])]
        assert totals == pytest.approx([totals[0]] * len(totals))
    # Classes of a corpus weigh by their frequency in it: corpus a's 20/20 clips of each class are
    # equal, and within speaker a:1 (15 and 15) as well; an unbalanced corpus gets balancing weights.
    assert w[(corpora == "a") & (y == 0)].sum() == pytest.approx(w[(corpora == "a") & (y == 1)].sum())
    y2 = y.copy()
    y2[40:45] = 0  # corpus b: speaker b:1 all class 0, b:2 2 of class 0 and 3 of class 1
    w2 = mixed_weights(y2, corpora, speakers, idx)
    b2 = speakers == "b:2"
    assert w2[b2 & (y2 == 1)].sum() > w2[b2 & (y2 == 0)].sum() * 1.5  # the rarer class weighs more


def test_label_masks_from_the_training_side_only():
    """A corpus's labels are those its training clips carry; a corpus not in training allows every label."""
    y = np.array([0, 1, 0, 2, 3, 3])
    corpora = np.array(["a", "a", "b", "b", "c", "c"])
    masks = label_masks(y, corpora, np.array([0, 1, 2, 3]), 4)
    np.testing.assert_array_equal(masks[0], [True, True, False, False])
    np.testing.assert_array_equal(masks[2], [True, False, True, False])
    np.testing.assert_array_equal(masks[4], [True, True, True, True])  # c: held out, nothing read
    assert is_mixed(corpora, np.array([0, 2])) and not is_mixed(corpora, np.array([0, 1]))
    assert not is_mixed(None, np.array([0]))
    probs = np.array([[0.1, 0.2, 0.6, 0.1]])
    assert restricted_argmax(probs, np.array([True, True, False, False]))[0] == 1
    assert restricted_argmax(probs, None)[0] == 2


def _synthetic(rng, n_per=30):
    """Two corpora with different label sets over 3 classes of well separated clusters (4 speakers each)."""
    centres = rng.normal(size=(3, 1, 16)) * 3
    xs, ys, speakers, corpora = [], [], [], []
    for corpus, labels in (("a", (0, 1)), ("b", (0, 2))):
        for s in range(4):
            for label in labels:
                xs.append(centres[label] + rng.normal(size=(n_per, 1, 16)))
                ys += [label] * n_per
                speakers += [f"{corpus}:{s}"] * n_per
                corpora += [corpus] * n_per
    return np.concatenate(xs).astype(np.float32), np.array(ys), np.array(speakers), np.array(corpora)


def test_masked_training_learns_a_mixed_label_problem():
    """A tiny MLP on two corpora (labels {0,1} and {0,2}) learns all three classes; saved compile is plain."""
    import keras

    x, y, speakers, corpora = _synthetic(np.random.default_rng(0))
    config = preset("accurate").override({"classes": ["neutral", "calm", "happy"], "train.epochs": 15,
                                          "train.validation_speakers": 2, "train.early_stopping_patience": 0,
                                          "train.restore_best": False, "model.dense_units": 16})
    model, history = fit(config, x, y, speakers, np.arange(len(y)), corpora=corpora)
    assert history["accuracy"][-1] > history["accuracy"][0] and history["accuracy"][-1] > 0.9
    assert np.isfinite(history["loss"]).all() and "val_loss" in history
    pred = predict_proba(model, x).argmax(axis=1)
    assert (pred == y).mean() > 0.9  # unrestricted: class 1 and 2 never met in one corpus, still apart
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)


def test_corpora_of():
    from pathlib import Path

    from ser.dataset import Clip

    clips = [Clip(Path("/a.wav"), "sad", "1", {"corpus": "ravdess"}), Clip(Path("/b.wav"), "sad", "x")]
    assert corpora_of(clips).tolist() == ["ravdess", ""]


SHARED_DATA = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data"


def test_real_two_corpus_run_fast_preset(tmp_path):
    """A small real run: 3 EMOVO actors and 2 TurEV-DB speakers, `fast` preset; saved, reloaded, same output."""
    from ser.dataset import load_datasets
    from ser.inference import Recognizer
    from ser.training import train_recognizer

    if not (SHARED_DATA / "emovo").is_dir() or not (SHARED_DATA / "turev").is_dir():
        pytest.skip("shared EMOVO/TurEV-DB copies not found")
    clips = load_datasets([SHARED_DATA / "emovo", SHARED_DATA / "turev"])
    keep = {"emovo:f1", "emovo:m1", "emovo:f2", "turev:1157", "turev:1234"}
    rng = np.random.default_rng(0)
    chosen = [c for c in clips if c.speaker in keep]
    chosen = [chosen[i] for i in sorted(rng.choice(len(chosen), size=120, replace=False))]
    config = preset("fast").override({"train.epochs": 4, "augment.copies": 0})
    rec, history = train_recognizer(chosen, config)
    assert len(history["loss"]) >= 1 and np.isfinite(history["loss"]).all()
    assert history["validation_speakers"] and set(history["validation_speakers"]) <= keep
    rec.save(tmp_path / "model")
    again = Recognizer.load(tmp_path / "model", runtime="keras")
    path = chosen[0].path
    before, after = rec.predict_file(path).scores, again.predict_file(path).scores
    assert list(after) == list(before)
    np.testing.assert_allclose([after[k] for k in before], [before[k] for k in before], atol=1e-5)
