"""Tests for ser.labels: the fixed emotion order, label normalisation, encode/decode."""

from __future__ import annotations

import numpy as np
import pytest

from ser.errors import ManifestError
from ser.labels import EMOTIONS, RAVDESS_CODES, decode, encode, normalize_label


def test_emotion_order_is_ravdess_code_order():
    """EMOTIONS is the RAVDESS code order 01..08, and the code table follows it."""
    assert EMOTIONS == ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
    assert RAVDESS_CODES == {f"{i:02d}": e for i, e in enumerate(EMOTIONS, start=1)}
    assert RAVDESS_CODES["05"] == "angry"


def test_encode_decode_round_trip():
    """encode() gives int64 indices into EMOTIONS; decode() inverts it."""
    labels = ["sad", "neutral", "surprised", "sad"]
    idx = encode(labels)
    assert idx.dtype == np.int64 and idx.shape == (4,)
    assert idx.tolist() == [3, 0, 7, 3]
    assert decode(idx) == labels
    assert decode(encode(EMOTIONS)) == list(EMOTIONS)
    assert encode([]).shape == (0,)


def test_encode_with_class_subset():
    """Indices follow the given classes' order."""
    classes = ("happy", "sad", "angry")
    assert encode(["angry", "happy", "Sadness"], classes).tolist() == [2, 0, 1]
    assert decode(np.array([2, 0]), classes) == ["angry", "happy"]


@pytest.mark.parametrize(("raw", "name"), [
    ("Fear", "fearful"), (" ANGER ", "angry"), ("surprise", "surprised"), ("disgusted", "disgust"),
    ("joy", "happy"), ("happiness", "happy"), ("sadness", "sad"), ("Neutral", "neutral"), ("calm", "calm"),
])
def test_aliases(raw, name):
    """Case, whitespace and common aliases map to the canonical names."""
    assert normalize_label(raw) == name
    assert decode(encode([raw])) == [name]


@pytest.mark.parametrize("raw", ["bored", "", "01", "contempt"])
def test_unknown_label(raw):
    """Unknown labels raise ManifestError (also a ValueError) naming the label."""
    with pytest.raises(ManifestError, match=rf"label={raw!r}: unknown emotion"):
        normalize_label(raw)
    with pytest.raises(ValueError, match="unknown emotion"):
        encode(["happy", raw])


def test_label_outside_model_classes():
    """A valid emotion that is not among the model's classes is refused."""
    with pytest.raises(ManifestError, match=r"label='calm': not among the model's classes \['happy', 'sad'\]"):
        encode(["happy", "calm"], ("happy", "sad"))
