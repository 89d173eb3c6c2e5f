"""The single, typed, validated configuration of a run or a model.

A :class:`Config` is frozen and validated on creation. It is saved as JSON next
to every run and inside every model folder; inference rebuilds its audio and
feature pipeline from the saved copy, so training and prediction cannot drift.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from ser.encoders import WHISPER_SR
from ser.errors import ConfigError
from ser.labels import EMOTIONS


def _check_range(name: str, value: float, low: float | None = None, high: float | None = None,
                 *, low_open: bool = False) -> None:
    # NaN passes every comparison and inf every lower bound: refuse both first.
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer past the float range (JSON allows 4300 digits)
        raise ConfigError(f"{name}={value!r}: expected a number within the float range") from None
    if not finite:
        raise ConfigError(f"{name}={value!r}: expected a finite number")
    if low is not None and (value <= low if low_open else value < low):
        bound = f"> {low}" if low_open else f">= {low}"
        raise ConfigError(f"{name}={value!r}: expected a value {bound}")
    if high is not None and value > high:
        raise ConfigError(f"{name}={value!r}: expected a value <= {high}")


@dataclass(frozen=True, kw_only=True)
class AudioConfig:
    """How audio is loaded before feature extraction.

    Parameters
    ----------
    sample_rate : int
        Rate (Hz) every clip is resampled to.
    duration : float
        Clips are cut or zero-padded to exactly this many seconds.
    min_duration : float
        Shorter clips are rejected as unusable.
    max_duration : float
        Longer files are rejected for single-clip prediction (decoding an hour of
        audio to classify its first seconds is almost certainly a mistake).
    trim_db : float
        Trim leading and trailing parts quieter than this many dB below the
        clip's peak before features (0 = keep everything).
    peak_normalize : bool
        Scale each clip to a peak of 1 before features (level invariance).
    """

    sample_rate: int = 16000
    duration: float = 3.0
    min_duration: float = 0.1
    max_duration: float = 60.0
    trim_db: float = 0.0
    peak_normalize: bool = False

    def __post_init__(self) -> None:
        _check_range("audio.sample_rate", self.sample_rate, 1000, 192000)
        _check_range("audio.duration", self.duration, 0.0, 60.0, low_open=True)
        _check_range("audio.min_duration", self.min_duration, 0.0, self.duration)
        _check_range("audio.max_duration", self.max_duration, self.min_duration, low_open=True)
        _check_range("audio.trim_db", self.trim_db, 0.0, 120.0)


@dataclass(frozen=True, kw_only=True)
class FeatureConfig:
    """Spectral features computed from each fixed-length clip.

    Parameters
    ----------
    kind : {"mfcc", "logmel", "whisper"}
        MFCC (librosa defaults otherwise), log-power mel spectrogram, or the
        frozen Whisper-base encoder: every layer's hidden states, pooled over
        time (mean and std) → ``(7, 1024)``; computed on each clip's own length
        (up to ``audio.duration``), at 16 kHz.
    n_mfcc : int
        Number of MFCC coefficients (``kind="mfcc"``).
    n_mels : int
        Mel bands (for ``logmel``, and the filterbank behind the MFCC).
    n_fft, hop_length : int
        STFT window and hop in samples.
    normalize : {"clip", "none"}
        ``"clip"`` z-normalises each clip's whole matrix by its own mean and std.
    encoder_precision : {"float32", "int8"}
        Weights of the whisper encoder: as published (float16 values computed in
        float32), or rounded to int8 per output channel, which is what a model
        folder can carry (an 18 MB export instead of 41 MB).
    encoder_graph : {"none", "float32", "int8", "int8-linear", "int8-mlp", "int8-ffn-in"}
        ``"none"``: the encoder runs in numpy (:class:`ser.encoders.WhisperEncoder`). Otherwise it
        runs as an ONNX graph on ONNX Runtime (:mod:`ser.encoder_onnx`) at that precision: float32,
        or a dynamic int8 variant (:data:`ser.encoder_onnx.INT8_VARIANTS`); the model folder then
        carries the graph as ``encoder.onnx``. Needs ``encoder_precision="float32"`` (the graph is
        built from the published weights; int8 graphs quantize them themselves).
    """

    kind: Literal["mfcc", "logmel", "whisper"] = "mfcc"
    n_mfcc: int = 40
    n_mels: int = 128
    n_fft: int = 2048
    hop_length: int = 512
    normalize: Literal["clip", "none"] = "clip"
    encoder_precision: Literal["float32", "int8"] = "float32"
    encoder_graph: Literal["none", "float32", "int8", "int8-linear", "int8-mlp", "int8-ffn-in"] = "none"

    def __post_init__(self) -> None:
        if self.encoder_graph != "none" and self.encoder_precision != "float32":
            raise ConfigError(f"features.encoder_graph={self.encoder_graph!r}: expected "
                              f"encoder_precision='float32', got {self.encoder_precision!r}")
        _check_range("features.n_mfcc", self.n_mfcc, 1, 128)
        _check_range("features.n_mels", self.n_mels, 8, 512)
        _check_range("features.n_fft", self.n_fft, 16, 16384)
        _check_range("features.hop_length", self.hop_length, 1, self.n_fft)
        if self.kind == "mfcc" and self.n_mfcc > self.n_mels:
            raise ConfigError(f"features.n_mfcc={self.n_mfcc}: expected at most n_mels={self.n_mels}")


@dataclass(frozen=True, kw_only=True)
class AugmentConfig:
    """Training-time augmentation; never applied to validation or test clips.

    Waveform transforms (audiomentations) produce ``copies`` augmented versions of
    each training clip, cached like clean features. Spectrogram masking is applied
    afresh to every training batch.

    Parameters
    ----------
    copies : int
        Augmented copies per training clip (0 disables waveform augmentation).
    noise_p, pitch_p, stretch_p, gain_p, shift_p : float
        Probability of each waveform transform.
    noise_min_amplitude, noise_max_amplitude : float
        Gaussian noise amplitude range.
    pitch_semitones : float
        Pitch shift range, +/- semitones.
    stretch_min, stretch_max : float
        Time-stretch rate range.
    gain_db : float
        Gain range, +/- dB.
    shift_max : float
        Circular time shift, +/- fraction of the clip.
    snr_p : float
        Probability of adding white noise at an SNR drawn from ``snr_min_db`` .. ``snr_max_db``.
    reverb_p, telephone_p, codec_p : float
        Probabilities of channel simulation: synthetic room reverberation (RT60
        0.3-0.9 s), the 300-3400 Hz telephone band, an Ogg Vorbis or MP3 round trip.
    time_masks, freq_masks : int
        Number of SpecAugment-style masks per training example.
    time_mask_width, freq_mask_width : int
        Maximum mask width in frames / feature bins.
    """

    copies: int = 0
    noise_p: float = 0.5
    noise_min_amplitude: float = 0.001
    noise_max_amplitude: float = 0.015
    pitch_p: float = 0.5
    pitch_semitones: float = 2.0
    stretch_p: float = 0.5
    stretch_min: float = 0.9
    stretch_max: float = 1.1
    gain_p: float = 0.5
    gain_db: float = 6.0
    shift_p: float = 0.5
    shift_max: float = 0.1
    snr_p: float = 0.0
    snr_min_db: float = 5.0
    snr_max_db: float = 30.0
    reverb_p: float = 0.0
    telephone_p: float = 0.0
    codec_p: float = 0.0
    time_masks: int = 0
    time_mask_width: int = 10
    freq_masks: int = 0
    freq_mask_width: int = 5

    def __post_init__(self) -> None:
        _check_range("augment.copies", self.copies, 0, 20)
        for name in ("noise_p", "pitch_p", "stretch_p", "gain_p", "shift_p", "snr_p", "reverb_p", "telephone_p",
                     "codec_p"):
            _check_range(f"augment.{name}", getattr(self, name), 0.0, 1.0)
        _check_range("augment.noise_min_amplitude", self.noise_min_amplitude, 0.0)
        _check_range("augment.noise_max_amplitude", self.noise_max_amplitude, self.noise_min_amplitude)
        _check_range("augment.pitch_semitones", self.pitch_semitones, 0.0, 12.0)
        _check_range("augment.stretch_min", self.stretch_min, 0.5, 1.0)
        _check_range("augment.stretch_max", self.stretch_max, 1.0, 2.0)
        _check_range("augment.gain_db", self.gain_db, 0.0, 40.0)
        _check_range("augment.shift_max", self.shift_max, 0.0, 0.5)
        _check_range("augment.snr_min_db", self.snr_min_db, -10.0, 60.0)
        _check_range("augment.snr_max_db", self.snr_max_db, self.snr_min_db, 60.0)
        for name in ("time_masks", "freq_masks"):
            _check_range(f"augment.{name}", getattr(self, name), 0, 10)
        for name in ("time_mask_width", "freq_mask_width"):
            _check_range(f"augment.{name}", getattr(self, name), 1)


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Architecture of the classifier (see :mod:`ser.models`).

    Parameters
    ----------
    architecture : {"cnn2d", "mlp"}
        Stack of Conv2D blocks over the (features, frames) image, or (for encoder
        features of shape (layers, dims)) a learned weighted sum of layers → MLP.
    filters : tuple of int
        Filters of each Conv2D → BatchNorm → MaxPool → Dropout block.
    kernel_size : int
        Square convolution kernel.
    conv_dropout, dense_dropout : float
        Dropout after each conv block / the dense layer.
    input_dropout : float
        Dropout on the MLP's input (the weighted layer sum).
    layers : {"weighted", "last"}
        MLP input: a learned weighted sum of all encoder layers, or the last
        layer only (the usual frozen-encoder probe; kept for the ablation).
    dense_units : int
        Width of the hidden dense layer.
    input_normalization : bool
        Standardise inputs with a Keras ``Normalization`` layer adapted on the
        training side only (saved inside the model).
    """

    architecture: Literal["cnn2d", "mlp"] = "cnn2d"
    filters: tuple[int, ...] = (32, 64, 128)
    kernel_size: int = 3
    conv_dropout: float = 0.2
    dense_units: int = 128
    dense_dropout: float = 0.3
    input_dropout: float = 0.0
    layers: Literal["weighted", "last"] = "weighted"
    input_normalization: bool = False

    def __post_init__(self) -> None:
        if not self.filters:
            raise ConfigError("model.filters=(): expected at least one conv block")
        for f in self.filters:
            _check_range("model.filters", f, 1, 1024)
        _check_range("model.kernel_size", self.kernel_size, 1, 15)
        _check_range("model.conv_dropout", self.conv_dropout, 0.0, 0.9)
        _check_range("model.dense_dropout", self.dense_dropout, 0.0, 0.9)
        _check_range("model.input_dropout", self.input_dropout, 0.0, 0.9)
        _check_range("model.dense_units", self.dense_units, 1, 8192)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How a model is fitted.

    Parameters
    ----------
    epochs, batch_size : int
        Training length and batch size.
    learning_rate : float
        Adam learning rate.
    label_smoothing : float
        Categorical cross-entropy label smoothing.
    class_weight : {"balanced", "none"}
        Weight classes inversely to their training frequency.
    validation_speakers : int
        Speakers drawn from the training side (never a test speaker) held out for
        validation curves, early stopping and best-checkpoint choice. 0 trains on
        every training clip with no validation set.
    early_stopping_patience : int
        Stop after this many epochs without a better validation loss (0 = off).
    restore_best : bool
        Keep the weights of the epoch with the best validation loss.
    seed : int
        The one seed behind splits, augmentation, initialisation and shuffling.
    ensemble : int
        Train this many members (seeds ``seed`` … ``seed + ensemble - 1``) and
        average their probabilities.
    corpus_balance : bool
        With clips of several corpora (``meta["corpus"]``): every corpus weighs the
        same in the loss, every speaker the same within their corpus, and classes are
        balanced within each corpus (see :func:`ser.training.mixed_weights`). One
        corpus trains as before.
    label_masks : bool
        With clips of several corpora: each clip's loss over the labels its corpus has
        (:func:`ser.models.masked_crossentropy`); ``false`` trains the plain softmax over
        the union, as if every absent label were wrong (an ablation).
    """

    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 7e-4
    label_smoothing: float = 0.1
    class_weight: Literal["balanced", "none"] = "balanced"
    validation_speakers: int = 0
    early_stopping_patience: int = 0
    restore_best: bool = False
    seed: int = 42
    ensemble: int = 1
    corpus_balance: bool = True
    label_masks: bool = True

    def __post_init__(self) -> None:
        _check_range("train.epochs", self.epochs, 1, 10000)
        _check_range("train.batch_size", self.batch_size, 1, 4096)
        _check_range("train.learning_rate", self.learning_rate, 0.0, 1.0, low_open=True)
        _check_range("train.label_smoothing", self.label_smoothing, 0.0, 0.5)
        _check_range("train.validation_speakers", self.validation_speakers, 0, 100)
        _check_range("train.early_stopping_patience", self.early_stopping_patience, 0)
        _check_range("train.seed", self.seed, 0, 2**32 - 1)
        _check_range("train.ensemble", self.ensemble, 1, 20)
        if (self.early_stopping_patience or self.restore_best) and not self.validation_speakers:
            raise ConfigError("train.validation_speakers=0: early stopping and restore_best need "
                              "validation speakers (expected >= 1)")


@dataclass(frozen=True, kw_only=True)
class SpeakerConfig:
    """Speaker adaptation (see :mod:`ser.speakers`).

    Parameters
    ----------
    adapted_head : bool
        Also train a second head on features standardised per speaker, used when
        a prediction has speaker information (an enrolment profile, or several
        clips of one speaker or session); the inductive head stays the default.
    prior_weight : float
        Shrinkage of a speaker's statistics toward the training speakers': the
        prior counts as this many clips.
    subset_stats : bool
        Standardise each augmented training copy with statistics of a random subset
        of its speaker's clips (as few as a new speaker will offer), not all of them.
    correct_mix : bool
        Correct unlabelled statistics for the emotions they come from (the inductive
        head's mean posterior over the clips; :meth:`ser.speakers.SpeakerNorm.correct`), so
        that a speaker heard in one emotion only is not standardised into neutrality.
    """

    adapted_head: bool = False
    prior_weight: float = 5.0
    subset_stats: bool = True
    correct_mix: bool = True

    def __post_init__(self) -> None:
        _check_range("speakers.prior_weight", self.prior_weight, 0.0, 1000.0)


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything that defines a run or a model.

    Parameters
    ----------
    name : str
        Preset or user-chosen name, recorded in reports and model cards.
    classes : tuple of str
        Output classes, in the fixed order of :data:`ser.labels.EMOTIONS`.
    """

    name: str = "custom"
    classes: tuple[str, ...] = EMOTIONS
    audio: AudioConfig = field(default_factory=AudioConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    speakers: SpeakerConfig = field(default_factory=SpeakerConfig)

    def __post_init__(self) -> None:
        unknown = [c for c in self.classes if c not in EMOTIONS]
        if unknown or len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
            raise ConfigError(f"classes={list(self.classes)}: expected 2+ distinct names from {list(EMOTIONS)}")
        if self.features.kind == "whisper" and self.audio.sample_rate != WHISPER_SR:
            raise ConfigError(f"audio.sample_rate={self.audio.sample_rate}: the whisper features need {WHISPER_SR}")
        if (self.features.kind == "whisper") != (self.model.architecture == "mlp"):
            raise ConfigError(f"model.architecture={self.model.architecture!r}: use 'mlp' with whisper features "
                              "and 'cnn2d' with spectral ones")
        if self.speakers.adapted_head and self.features.kind != "whisper":
            raise ConfigError("speakers.adapted_head=true: speaker adaptation needs whisper features")

    # --- serialisation -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the config as JSON, atomically."""
        from ser.utils import atomic_write_text

        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Build and validate a config from a (possibly partial) dictionary."""
        return _build(cls, data, "")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Config:
        """Read a config saved by :meth:`save` (or written by hand).

        Raises
        ------
        ConfigError
            Missing file, bytes that are not UTF-8 JSON, or an invalid config (one line).
        """
        try:
            # Decoded here, not by json.loads(bytes): that would guess UTF-16/32 from the first bytes.
            data = json.loads(Path(path).read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not a readable JSON config (not UTF-8 text: byte {exc.start} is "
                              f"{exc.object[exc.start]:#04x})") from None
        except (OSError, ValueError, RecursionError) as exc:
            # ValueError: JSONDecodeError, or an integer past Python's 4300-digit limit;
            # RecursionError: lists or objects nested thousands deep.
            raise ConfigError(f"{path}: not a readable JSON config ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        return cls.from_dict(data)

    def override(self, changes: dict[str, Any]) -> Config:
        """Return a copy with dotted keys replaced, e.g. ``{"train.epochs": 5}``."""
        data = self.to_dict()
        for key, value in changes.items():
            *parents, leaf = key.split(".")
            node = data
            for part in parents:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"{key}: unknown config field")
                node = node[part]
            if leaf not in node:
                raise ConfigError(f"{key}: unknown config field")
            node[leaf] = value
        return Config.from_dict(data)


def _coerce(name: str, hint: Any, value: Any) -> Any:
    """Check ``value`` against a field's type hint, converting JSON lists to tuples."""
    origin = get_origin(hint)
    if origin is Literal:
        if value not in get_args(hint):
            raise ConfigError(f"{name}={value!r}: expected one of {list(get_args(hint))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}={value!r}: expected a list")
        item = get_args(hint)[0]
        return tuple(_coerce(name, item, v) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}={value!r}: expected true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}={value!r}: expected an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}={value!r}: expected a number")
        try:
            return float(value)
        except OverflowError:  # an integer past the float range (JSON allows 4300 digits)
            raise ConfigError(f"{name}={value!r}: expected a number within the float range") from None
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}={value!r}: expected a string")
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{name}={value!r}: expected an object")
        return _build(hint, value, name + ".")
    raise ConfigError(f"{name}: unsupported field type {hint!r}")  # pragma: no cover


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown config field")
    kwargs = {k: _coerce(prefix + k, hints[k], v) for k, v in data.items()}
    return cls(**kwargs)


# --- presets -------------------------------------------------------------

def _seed_cnn() -> Config:
    # The original notebook, exactly: librosa.load(sr=22050, duration=3), 40 MFCC,
    # per-clip z-normalisation, 3 conv blocks, Adam 7e-4, label smoothing 0.1,
    # batch 32, 100 epochs, balanced class weights, seed 42, no augmentation
    # (it was defined but never applied) and no early stopping (likewise).
    return Config(
        name="seed_cnn",
        audio=AudioConfig(sample_rate=22050, duration=3.0),
        features=FeatureConfig(kind="mfcc", n_mfcc=40),
        augment=AugmentConfig(copies=0),
        model=ModelConfig(),
        train=TrainConfig(epochs=100, validation_speakers=0),
    )


def _cnn() -> Config:
    # The same network with the original's missing steps done properly: the
    # augmentation it defined (noise, pitch +/-2 st, stretch 0.9-1.1) plus gain,
    # shift and spectrogram masking, train-only input standardisation, and early
    # stopping / best checkpoint on validation speakers from the training side.
    return Config(
        name="cnn",
        audio=AudioConfig(sample_rate=16000, duration=3.0),
        features=FeatureConfig(kind="mfcc", n_mfcc=40, n_fft=1024, hop_length=256),
        augment=AugmentConfig(copies=2, time_masks=2, freq_masks=2),
        model=ModelConfig(input_normalization=True),
        train=TrainConfig(epochs=100, validation_speakers=2, early_stopping_patience=15, restore_best=True),
    )


def _accurate() -> Config:
    # The frozen Whisper-base encoder (all 7 hidden states, mean + std over each
    # clip's own length), a learned weighted sum of layers and a small MLP, with
    # waveform augmentation before the encoder and early stopping on validation
    # speakers from the training side.
    return Config(
        name="accurate",
        audio=AudioConfig(sample_rate=16000, duration=30.0),
        features=FeatureConfig(kind="whisper"),
        augment=AugmentConfig(copies=2),
        model=ModelConfig(architecture="mlp", dense_units=256, dense_dropout=0.3, input_dropout=0.2,
                          input_normalization=True),
        train=TrainConfig(epochs=60, batch_size=32, learning_rate=1e-3, validation_speakers=2,
                          early_stopping_patience=10, restore_best=True),
    )


def _robust() -> Config:
    # `accurate` made robust to recording conditions: silence trimmed and level
    # normalised before the encoder (at training and prediction alike), and the
    # augmented copies also simulate noise, rooms, telephone lines and codecs.
    base = _accurate()
    return base.override({
        "name": "robust", "audio.trim_db": 40.0, "audio.peak_normalize": True, "augment.copies": 3,
        "augment.snr_p": 0.5, "augment.reverb_p": 0.3, "augment.telephone_p": 0.2, "augment.codec_p": 0.2,
    })


def _fast() -> Config:
    # The speed model: a small MFCC CNN that needs neither an encoder nor librosa at
    # prediction time. 3 s at 16 kHz, 32 MFCC from 32 mel bands of a 512-point STFT
    # every 20 ms (32 x 151 per clip), four small conv blocks (8/16/32/64 filters,
    # about 4.5 M multiply-adds per clip) and a 64-unit dense layer (about 100 k
    # parameters). Trained like `cnn` (augmented copies, spectrogram masking,
    # train-only standardisation, early stopping on validation speakers from the
    # training side), with one copy and at most 60 epochs so that an si6 run stays
    # within minutes on 2 CPU cores. (In a one-fold pilot without augmentation,
    # 32 MFCC beat 32 log-mel bands and a fourth block beat three; logmel with
    # 8/16/32 filters hardly learned.)
    return Config(
        name="fast",
        audio=AudioConfig(sample_rate=16000, duration=3.0),
        features=FeatureConfig(kind="mfcc", n_mfcc=32, n_mels=32, n_fft=512, hop_length=320),
        augment=AugmentConfig(copies=1, time_masks=1, time_mask_width=10, freq_masks=1, freq_mask_width=4),
        model=ModelConfig(filters=(8, 16, 32, 64), dense_units=64, conv_dropout=0.2, dense_dropout=0.3,
                          input_normalization=True),
        train=TrainConfig(epochs=60, batch_size=32, learning_rate=1e-3, validation_speakers=2,
                          early_stopping_patience=10, restore_best=True),
    )


def _tiny() -> Config:
    # For tests and smoke runs: small and quick, same code paths as the real presets.
    return Config(
        name="tiny",
        audio=AudioConfig(sample_rate=16000, duration=1.0),
        features=FeatureConfig(kind="logmel", n_mels=32, n_fft=512, hop_length=256),
        model=ModelConfig(filters=(8, 16), dense_units=64),
        train=TrainConfig(epochs=3, batch_size=16, learning_rate=0.003),
    )


PRESETS = {"seed_cnn": _seed_cnn, "cnn": _cnn, "accurate": _accurate, "robust": _robust, "fast": _fast,
           "tiny": _tiny}


def preset(name: str) -> Config:
    """Return the named preset config (``seed_cnn``, ``cnn``, ``accurate``, ``robust``, ``fast`` or ``tiny``)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"preset={name!r}: unknown; expected one of {sorted(PRESETS)}") from None


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["train.epochs=20", 'features.kind="logmel"']`` → ``{"train.epochs": 20, ...}``.

    Values are read as JSON when they parse (numbers, booleans, lists), else as text.
    """
    changes: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=20")
        try:
            changes[key] = json.loads(value)
        except json.JSONDecodeError:
            changes[key] = value
    return changes


def resolve(spec: str) -> Config:
    """A preset name or the path of a JSON config file → :class:`Config`."""
    if spec in PRESETS:
        return preset(spec)
    if spec.endswith(".json") or os.path.exists(spec):
        return Config.load(spec)
    raise ConfigError(f"config={spec!r}: neither a preset ({', '.join(sorted(PRESETS))}) nor a JSON file")
