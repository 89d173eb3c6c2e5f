"""Tests for ser.augment: reproducible from an explicit Generator, global randomness untouched."""

from __future__ import annotations

import random

import numpy as np
import pytest
from conftest import tone

from ser.augment import augment_waveform, mask_spectrogram
from ser.config import AugmentConfig

SR = 16000
ALL = AugmentConfig(noise_p=1.0, pitch_p=1.0, stretch_p=1.0, gain_p=1.0, shift_p=1.0)
NONE = AugmentConfig(noise_p=0.0, pitch_p=0.0, stretch_p=0.0, gain_p=0.0, shift_p=0.0)
MASKS = AugmentConfig(time_masks=2, time_mask_width=8, freq_masks=2, freq_mask_width=4)


@pytest.fixture(scope="module")
def y() -> np.ndarray:
    return tone("happy", sr=SR, seconds=1.0)


def test_same_seed_same_output(y):
    """Two generators with the same seed give identical augmentations."""
    a = augment_waveform(y, sr=SR, config=ALL, rng=np.random.default_rng(7))
    b = augment_waveform(y, sr=SR, config=ALL, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


def test_different_seeds_differ(y):
    a = augment_waveform(y, sr=SR, config=ALL, rng=np.random.default_rng(1))
    b = augment_waveform(y, sr=SR, config=ALL, rng=np.random.default_rng(2))
    assert not np.allclose(a, b)


def test_successive_draws_differ(y):
    """One generator used twice gives two different copies."""
    rng = np.random.default_rng(3)
    a = augment_waveform(y, sr=SR, config=ALL, rng=rng)
    b = augment_waveform(y, sr=SR, config=ALL, rng=rng)
    assert not np.allclose(a, b)


def test_shape_dtype_kept_and_input_changed(y):
    """With every transform on, the output keeps shape and dtype, is finite, and differs from the input."""
    before = y.copy()
    out = augment_waveform(y, sr=SR, config=ALL, rng=np.random.default_rng(0))
    assert out.shape == y.shape and out.dtype == np.float32 and np.all(np.isfinite(out))
    assert not np.allclose(out, y, atol=1e-3)
    np.testing.assert_array_equal(y, before)  # input not modified


@pytest.mark.parametrize("name", ["noise_p", "pitch_p", "stretch_p", "gain_p", "shift_p"])
def test_each_transform_alone_changes_the_signal(y, name):
    """Each waveform transform, alone with p=1, changes the signal and keeps its length."""
    cfg = AugmentConfig(**{**{k: 0.0 for k in ("noise_p", "pitch_p", "stretch_p", "gain_p", "shift_p")},
                           name: 1.0})
    out = augment_waveform(y, sr=SR, config=cfg, rng=np.random.default_rng(5))
    assert out.shape == y.shape and out.dtype == np.float32
    assert not np.allclose(out, y, atol=1e-4)


def test_all_probabilities_zero_is_identity(y):
    out = augment_waveform(y, sr=SR, config=NONE, rng=np.random.default_rng(0))
    np.testing.assert_allclose(out, y)


def test_global_random_state_untouched(y):
    """Neither `random` nor `np.random` global states are consumed or reseeded."""
    random.seed(123)
    np.random.seed(456)
    expected = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(456)
    augment_waveform(y, sr=SR, config=ALL, rng=np.random.default_rng(9))
    assert (random.random(), np.random.rand()) == expected


def test_output_independent_of_global_state(y):
    """The result depends on `rng` only, not on the global seeds."""
    random.seed(1)
    np.random.seed(1)
    a = augment_waveform(y, sr=SR, config=ALL, rng=np.random.default_rng(11))
    random.seed(2)
    np.random.seed(2)
    b = augment_waveform(y, sr=SR, config=ALL, rng=np.random.default_rng(11))
    np.testing.assert_array_equal(a, b)


# --- spectrogram masking -----------------------------------------------------

def batch(shape=(6, 20, 50)) -> np.ndarray:
    return np.random.default_rng(0).normal(size=shape).astype(np.float32) + 5.0  # no natural zeros


def test_mask_masks_whole_rows_and_columns():
    """Masked cells are filled with 0 and form whole feature rows / frame columns of an example."""
    x = batch()
    out = mask_spectrogram(x, config=MASKS, rng=np.random.default_rng(0))
    masked = out == 0
    assert masked.any()
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_array_equal(out[~masked], x[~masked])
    for m in masked:
        rows, cols = m.all(axis=1), m.all(axis=0)
        np.testing.assert_array_equal(m, rows[:, None] | cols[None, :])
        assert rows.sum() <= 2 * 4 and cols.sum() <= 2 * 8


def test_mask_does_not_modify_input_and_is_reproducible():
    x = batch()
    before = x.copy()
    a = mask_spectrogram(x, config=MASKS, rng=np.random.default_rng(4))
    b = mask_spectrogram(x, config=MASKS, rng=np.random.default_rng(4))
    c = mask_spectrogram(x, config=MASKS, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_mask_with_channel_axis_and_fill():
    """A trailing channel axis is kept and masked cells take the fill value."""
    x = batch((3, 16, 40, 1))
    out = mask_spectrogram(x, config=MASKS, rng=np.random.default_rng(1), fill=-1.0)
    assert out.shape == x.shape
    assert (out == -1.0).any() and not (out == 0).any()


def test_no_masks_is_identity():
    x = batch()
    np.testing.assert_array_equal(mask_spectrogram(x, config=AugmentConfig(), rng=np.random.default_rng(0)), x)
