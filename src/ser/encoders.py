"""Pretrained speech encoders run in plain numpy: OpenAI Whisper's encoder, every layer.

CTranslate2 runs Whisper fast, but its ``encode`` only returns the encoder's last layer, while
emotion is often better read from the middle layers. This module therefore reads the encoder's
weights straight out of a CTranslate2 ``model.bin`` and runs the encoder itself, in float32 numpy,
returning the hidden state after every layer (the Hugging Face ``output_hidden_states`` layout).
Its last state matches CTranslate2's own ``encode`` output (see ``tests/test_encoders.py``), and
neither ``ctranslate2`` nor ``torch`` is needed at run time.

Three pieces:

* :func:`read_ctranslate2_variables` parses CTranslate2's binary model format (version 6);
* :func:`whisper_log_mel` computes Whisper's log-mel input features, exactly as Whisper does;
* :class:`WhisperEncoder` is the encoder (:func:`encode_waveform` chains the two for one clip).

The ``model.bin`` layout (``ModelSpec._serialize`` in ``ctranslate2/specs/model_spec.py``, checked
against ctranslate2 4.8.5; every integer is written with ``struct`` in native order, i.e. little
endian, without any padding or alignment, so most tensors start at odd offsets)::

    uint32  binary version                       (6)
    string  spec name                            ("WhisperSpec")
    uint32  spec revision                        (3 for Whisper)
    uint32  number of variables                  (212 for whisper-base)
    per variable, sorted by name:
        string  name                             ("encoder/conv1/weight")
        uint8   rank                             (0 for scalars such as encoder/num_heads)
        uint32  dimension, ``rank`` times
        uint8   dtype id: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16
        uint32  number of bytes
        bytes   the values, C order
    uint32  number of aliases
    per alias: string alias name, string name of the variable it stands for

where ``string`` is a uint16 length that *includes* a trailing NUL, then the UTF-8 bytes, then the
NUL. Aliases replace duplicated tensors; the converter keeps the name that sorts first, so an
``encoder/`` variable could be stored under a ``decoder/`` name (none is, in whisper-base: its only
alias is ``decoder/projection/weight -> decoder/embeddings/weight``).
"""

from __future__ import annotations

import functools
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ser.errors import ModelError
from ser.utils import sha256_file

__all__ = [
    "DEFAULT_WHISPER_DIR",
    "WHISPER_DIR_ENV",
    "WhisperEncoder",
    "default_whisper_dir",
    "encode_waveform",
    "quantize_int8",
    "read_ctranslate2_variables",
    "save_encoder",
    "whisper_log_mel",
]

#: Where the shared CTranslate2 Whisper-base folder sits in a source checkout: ``../shared/models``
#: next to the repository root. An installed package has no such folder: set :data:`WHISPER_DIR_ENV`.
DEFAULT_WHISPER_DIR = Path(__file__).resolve().parents[3] / "shared" / "models" / "whisper-base"
#: Environment variable that, when set, replaces :data:`DEFAULT_WHISPER_DIR`.
WHISPER_DIR_ENV = "SER_WHISPER_DIR"

#: The only CTranslate2 binary version this reader understands (the current one since 2023).
CT2_BINARY_VERSION = 6
#: numpy dtypes of CTranslate2's dtype ids (``DataType`` in ``include/ctranslate2/types.h``).
#: bfloat16 has no numpy dtype: it is read as raw uint16 and widened by hand.
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}

#: Whisper's audio front end (``whisper/audio.py``): 16 kHz, 25 ms windows, 10 ms hop, 80 mel bins.
WHISPER_SR = 16000
#: Whisper-base: transformer blocks and their width; hidden states = the embedding output + one per block.
WHISPER_BASE_BLOCKS = 6
WHISPER_BASE_WIDTH = 512
WHISPER_HIDDEN_STATES = WHISPER_BASE_BLOCKS + 1
WHISPER_N_FFT = 400
WHISPER_HOP = 160
WHISPER_N_MELS = 80
#: The encoder's positional table covers 30 s, i.e. 3000 mel frames (1500 after the stride-2 conv).
WHISPER_MAX_FRAMES = 3000
#: PyTorch's ``nn.LayerNorm`` default, which Whisper uses.
LAYER_NORM_EPS = 1e-5


# --------------------------------------------------------------------------- model.bin reader


def read_ctranslate2_variables(path: str | os.PathLike, *, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """Read the variables of a CTranslate2 ``model.bin`` whose names start with ``prefix``.

    Parameters
    ----------
    path : str or os.PathLike
        A CTranslate2 ``model.bin`` in binary format version 6 (see the module docstring).
    prefix : str, default "encoder/"
        Keep only variables whose name starts with this; the others are skipped with a seek, so
        reading the 41 MB Whisper-base encoder does not read the 104 MB decoder. ``""`` keeps all.

    Returns
    -------
    dict of str to numpy.ndarray
        Name to array, in file order, aliases resolved (an alias gets the array of its target).
        float16 and bfloat16 tensors are widened to float32; the integer scalars (e.g.
        ``encoder/num_heads``, int16) and float32 tensors keep their dtype. Arrays are writable
        and own their memory.

    Raises
    ------
    ModelError
        If the file is missing, of another binary version, truncated or otherwise malformed.
    """
    path = Path(path)
    _, _, variables = _read_model_bin(path, prefix)
    return variables


def _read_model_bin(path: Path, prefix: str) -> tuple[str, int, dict[str, np.ndarray]]:
    """Parse ``path``; return its spec name, spec revision and the variables under ``prefix``."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            return _parse_model_bin(fh, size, prefix, path)
    except ModelError:
        raise
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the CTranslate2 model ({exc.strerror or exc})") from exc
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        # Garbage that happens to start like a version-6 file trips over one of these.
        raise ModelError(f"{path}: not a valid CTranslate2 model.bin ({exc})") from exc


def _parse_model_bin(fh: BinaryIO, size: int, prefix: str, path: Path) -> tuple[str, int, dict[str, np.ndarray]]:
    """The parser proper; ``_read_model_bin`` turns low-level failures into :class:`ModelError`."""

    def read_exact(n: int) -> bytes:
        data = fh.read(n)
        if len(data) != n:
            raise ModelError(f"{path}: truncated CTranslate2 model.bin (ends at byte {fh.tell()} of a "
                             f"{n}-byte read)")
        return data

    def read_uint(fmt: str) -> int:
        return struct.unpack(fmt, read_exact(struct.calcsize(fmt)))[0]

    def read_string() -> str:
        length = read_uint("<H")  # counts the trailing NUL
        raw = read_exact(length)
        if length == 0 or raw[-1] != 0:
            raise ModelError(f"{path}: malformed string at byte {fh.tell() - length} of the CTranslate2 model.bin")
        return raw[:-1].decode("utf-8")

    # There is no magic number: the leading version word doubles as one, so garbage fails here.
    version = read_uint("<I")
    if version != CT2_BINARY_VERSION:
        raise ModelError(f"{path}: CTranslate2 binary version {version} is not supported "
                         f"(expected {CT2_BINARY_VERSION}); not a current CTranslate2 model.bin?")
    spec_name = read_string()
    revision = read_uint("<I")
    count = read_uint("<I")

    # First pass over headers only: remember where each wanted tensor lies, seek over the rest.
    # Offsets are kept for *all* variables because an alias under ``prefix`` may point elsewhere.
    index: dict[str, tuple[int, tuple[int, ...], int, int]] = {}
    for _ in range(count):
        name = read_string()
        rank = read_uint("<B")
        shape = struct.unpack(f"<{rank}I", read_exact(4 * rank))
        dtype_id = read_uint("<B")
        n_bytes = read_uint("<I")
        if dtype_id not in _CT2_DTYPES:
            raise ModelError(f"{path}: variable {name!r} has unknown dtype id {dtype_id}")
        itemsize = 2 if dtype_id == 5 else np.dtype(_CT2_DTYPES[dtype_id]).itemsize
        if n_bytes != itemsize * math.prod(shape):
            raise ModelError(f"{path}: variable {name!r} declares {n_bytes} bytes for shape {shape}")
        offset = fh.tell()
        if offset + n_bytes > size:
            raise ModelError(f"{path}: truncated CTranslate2 model.bin (variable {name!r} needs bytes "
                             f"{offset}..{offset + n_bytes}, the file has {size})")
        index[name] = (offset, shape, dtype_id, n_bytes)
        fh.seek(n_bytes, os.SEEK_CUR)

    aliases = {}
    for _ in range(read_uint("<I")):
        alias = read_string()
        aliases[alias] = read_string()

    variables: dict[str, np.ndarray] = {}
    wanted = [name for name in index if name.startswith(prefix)]
    wanted += [alias for alias in aliases if alias.startswith(prefix)]
    for name in wanted:
        target = aliases.get(name, name)
        if target not in index:
            raise ModelError(f"{path}: alias {name!r} points at missing variable {target!r}")
        offset, shape, dtype_id, n_bytes = index[target]
        fh.seek(offset)
        variables[name] = _decode_tensor(read_exact(n_bytes), shape, dtype_id)
    return spec_name, revision, variables


def _decode_tensor(raw: bytes, shape: tuple[int, ...], dtype_id: int) -> np.ndarray:
    """Bytes of one stored tensor to an owned numpy array; half-precision floats become float32."""
    if dtype_id == 5:
        # bfloat16 is the top half of a float32: shift the 16 bits into place.
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    values = np.frombuffer(raw, dtype=np.dtype(_CT2_DTYPES[dtype_id]).newbyteorder("<")).reshape(shape)
    if dtype_id == 4:
        return values.astype(np.float32)
    return values.astype(values.dtype.newbyteorder("="), copy=True)  # own, writable, native order


# --------------------------------------------------------------------------- features


def _mel_filters() -> np.ndarray:
    """Whisper's 80 x 201 mel filter bank (read-only, built once).

    Whisper's ``mel_filters.npz`` was made with ``librosa.filters.mel(sr=16000, n_fft=400,
    n_mels=80)`` (Slaney mel scale, area normalisation); :func:`ser.features.mel_filters` does
    the same arithmetic in numpy (a test checks the result equals librosa's exactly).
    """
    from ser.features import mel_filters

    return mel_filters(sr=WHISPER_SR, n_fft=WHISPER_N_FFT, n_mels=WHISPER_N_MELS)


@functools.lru_cache(maxsize=1)
def _hann_window() -> np.ndarray:
    """Periodic Hann window of ``WHISPER_N_FFT`` samples, as ``torch.hann_window`` makes it."""
    n = np.arange(WHISPER_N_FFT, dtype=np.float64)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / WHISPER_N_FFT)
    window.setflags(write=False)
    return window


def whisper_log_mel(y: np.ndarray, *, n_frames: int | None = None) -> np.ndarray:
    """Whisper's log-mel spectrogram (``whisper.audio.log_mel_spectrogram``) of a 16 kHz clip.

    The recipe: the waveform is zero-padded or cut to ``n_frames * 160`` samples (as Whisper's
    ``pad_or_trim`` does to 30 s), centred STFT (n_fft 400, hop 160, periodic Hann window, reflect
    padding), the last frame dropped, power spectrum, Slaney mel filters (80 bins),
    ``log10(max(x, 1e-10))``, then ``max(x, x.max() - 8)`` and ``(x + 4) / 4``.

    Parameters
    ----------
    y : numpy.ndarray
        Mono waveform at 16 kHz, 1-D, finite, not empty; any float dtype (computed in float64).
    n_frames : int, optional
        Number of frames (10 ms each) wanted, at least 2. Default: ``len(y) // 160`` rounded down to
        an even number, which the encoder needs (its second convolution has stride 2); the clip
        must then have at least 320 samples. Give 3000 for Whisper's fixed 30 s input.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(80, n_frames)``; values lie within ``[m - 2, m]`` where ``m = (max + 4) / 4``,
        roughly ``[-1.5, 2]`` for speech.

    Raises
    ------
    ValueError
        If ``y`` is not a non-empty 1-D finite array, or ``n_frames`` is not an integer >= 2
        (or the clip is too short for the default).
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D mono waveform, got an array of shape {y.shape}")
    if y.size == 0:
        raise ValueError("y is empty")
    if not np.issubdtype(y.dtype, np.number) or np.iscomplexobj(y):
        raise ValueError(f"y must be a real-valued waveform, got dtype {y.dtype}")
    y = y.astype(np.float64, copy=False)
    if not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or infinite samples")
    if n_frames is None:
        n_frames = (y.size // WHISPER_HOP) // 2 * 2
        if n_frames < 2:
            raise ValueError(f"y has {y.size} samples; Whisper features need at least {2 * WHISPER_HOP} "
                             "(2 frames of 10 ms at 16 kHz)")
    elif isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 2:
        # >= 2 also keeps the reflect padding (200 samples) shorter than the signal, as torch requires.
        raise ValueError(f"n_frames must be an integer >= 2, got {n_frames!r}")
    n_frames = int(n_frames)

    n_samples = n_frames * WHISPER_HOP
    if y.size >= n_samples:
        y = y[:n_samples]
    else:
        y = np.pad(y, (0, n_samples - y.size))

    # Centred STFT: reflect-pad n_fft // 2 on each side, then n_frames + 1 frames, of which Whisper
    # drops the last one (stft[..., :-1]), leaving exactly n_frames.
    half = WHISPER_N_FFT // 2
    padded = np.pad(y, (half, half), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, WHISPER_N_FFT)[::WHISPER_HOP][:n_frames]
    spectrum = np.fft.rfft(frames * _hann_window(), axis=-1)  # (n_frames, 201)
    power = spectrum.real**2 + spectrum.imag**2

    mel = _mel_filters().astype(np.float64) @ power.T  # (80, n_frames)
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


# --------------------------------------------------------------------------- encoder


def default_whisper_dir() -> Path:
    """The Whisper folder to use: ``$SER_WHISPER_DIR`` if set, else :data:`DEFAULT_WHISPER_DIR`.

    Read at call time (not import time), so setting the variable later still takes effect.
    """
    override = os.environ.get(WHISPER_DIR_ENV, "").strip()
    return Path(override).expanduser() if override else DEFAULT_WHISPER_DIR


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, in place; Whisper uses ``nn.GELU()`` and CTranslate2 ``Activation.GELU``."""
    from scipy.special import erf

    # 0.5 * x * (1 + erf(x / sqrt 2)), computed with two temporaries fewer than the literal formula.
    t = erf(x * np.float32(1.0 / np.sqrt(2.0)))
    t += 1.0
    t *= 0.5
    x *= t
    return x


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Layer norm over the last axis (biased variance, epsilon 1e-5, like ``nn.LayerNorm``)."""
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    var = np.mean(centered * centered, axis=-1, keepdims=True)
    centered /= np.sqrt(var + np.float32(LAYER_NORM_EPS))
    centered *= gamma
    centered += beta
    return centered


def _conv1d_time_major(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    """``nn.Conv1d(kernel 3, padding 1, stride)`` on time-major input, as im2col + one matmul.

    Parameters
    ----------
    x : numpy.ndarray
        ``(batch, time, in_channels)``.
    weight : numpy.ndarray
        ``(in_channels * 3, out_channels)``: the ``(out, in, 3)`` kernel flattened over (in, k) and
        transposed, prepared once by :class:`WhisperEncoder`.
    """
    padded = np.pad(x, ((0, 0), (1, 1), (0, 0)))
    # (batch, time_out, in, 3): the window axis comes last, matching the (in, k) flattening.
    windows = np.lib.stride_tricks.sliding_window_view(padded, 3, axis=1)[:, ::stride]
    cols = windows.reshape(x.shape[0], windows.shape[1], -1)  # copies: this is the im2col
    out = cols @ weight
    out += bias
    return out


class WhisperEncoder:
    """Whisper's audio encoder in float32 numpy, returning the hidden state after every layer.

    Architecture (pre-LayerNorm transformer, as in ``whisper/model.py::AudioEncoder``): conv1 (k 3)
    -> GELU -> conv2 (k 3, stride 2) -> GELU -> + sinusoidal positions, then per block
    ``x += attn(LN(x)); x += ffn(LN(x))`` with full (unmasked) multi-head self-attention and a
    GELU MLP, then a final LayerNorm.

    Parameters
    ----------
    variables : Mapping of str to numpy.ndarray
        The ``encoder/...`` variables of a CTranslate2 Whisper model, as returned by
        :func:`read_ctranslate2_variables`. Dimensions (mel bins, width, heads, depth) are taken
        from them, so other Whisper sizes work too.

    Raises
    ------
    ModelError
        If a variable is missing or has an unexpected shape.

    Examples
    --------
    >>> enc = WhisperEncoder.from_dir()                      # doctest: +SKIP
    >>> states = enc(whisper_log_mel(y))                     # doctest: +SKIP
    >>> states.shape  # (n_layers, batch, frames // 2, dim)  # doctest: +SKIP
    (7, 1, 184, 512)
    """

    def __init__(self, variables: Mapping[str, np.ndarray]) -> None:
        def get(name: str, ndim: int) -> np.ndarray:
            key = f"encoder/{name}"
            if key not in variables:
                raise ModelError(f"Whisper encoder variable {key!r} is missing")
            value = np.asarray(variables[key])
            if value.ndim != ndim:
                raise ModelError(f"Whisper encoder variable {key!r} has shape {value.shape}, expected {ndim}-D")
            return value.astype(np.float32) if ndim else value

        conv1 = get("conv1/weight", 3)
        conv2 = get("conv2/weight", 3)
        self._n_mels = conv1.shape[1]
        self._dim = conv1.shape[0]
        self._n_heads = int(get("num_heads", 0))
        if conv1.shape[2] != 3 or conv2.shape != (self._dim, self._dim, 3):
            raise ModelError(f"Whisper encoder convolutions have shapes {conv1.shape} and {conv2.shape}")
        if self._n_heads < 1 or self._dim % self._n_heads:
            raise ModelError(f"Whisper encoder width {self._dim} is not divisible by {self._n_heads} heads")
        # Kernels (out, in, 3) -> (in * 3, out), once, so each convolution is a single matmul.
        self._conv1 = (conv1.reshape(self._dim, -1).T.copy(), get("conv1/bias", 1))
        self._conv2 = (conv2.reshape(self._dim, -1).T.copy(), get("conv2/bias", 1))
        self._positions = get("position_encodings/encodings", 2)
        if self._positions.shape[1] != self._dim:
            raise ModelError(f"Whisper positional encodings have shape {self._positions.shape}")

        def linear(name: str) -> tuple[np.ndarray, np.ndarray]:
            # Stored like nn.Linear, (out, in); kept transposed so x @ w needs no per-call transpose.
            return get(f"{name}/weight", 2).T.copy(), get(f"{name}/bias", 1)

        def norm(name: str) -> tuple[np.ndarray, np.ndarray]:
            return get(f"{name}/gamma", 1), get(f"{name}/beta", 1)

        n_blocks = 0
        while f"encoder/layer_{n_blocks}/ffn/linear_0/weight" in variables:
            n_blocks += 1
        if n_blocks == 0:
            raise ModelError("Whisper encoder has no transformer layers (encoder/layer_0/... missing)")
        self._blocks = []
        for i in range(n_blocks):
            scope = f"layer_{i}"
            qkv = linear(f"{scope}/self_attention/linear_0")
            if qkv[0].shape != (self._dim, 3 * self._dim):
                raise ModelError(f"Whisper encoder {scope} fused q/k/v weight has shape {qkv[0].T.shape}")
            self._blocks.append({
                "attn_norm": norm(f"{scope}/self_attention/layer_norm"),
                "qkv": qkv,
                "out": linear(f"{scope}/self_attention/linear_1"),
                "ffn_norm": norm(f"{scope}/ffn/layer_norm"),
                "ffn_in": linear(f"{scope}/ffn/linear_0"),
                "ffn_out": linear(f"{scope}/ffn/linear_1"),
            })
        self._final_norm = norm("layer_norm")

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> WhisperEncoder:
        """Load an encoder exported by :func:`save_encoder` (no pickle: arrays only).

        Raises
        ------
        ModelError
            If the file is missing or not such an export.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                stored = {name: data[name] for name in data.files}
        except FileNotFoundError:
            raise ModelError(f"{path}: encoder file not found") from None
        except Exception as exc:  # noqa: BLE001 - zip/npy errors of many kinds
            raise ModelError(f"{path}: not a readable encoder export ({exc})") from None
        return cls(_dequantize(stored))

    @classmethod
    def from_dir(cls, path: str | os.PathLike | None = None, *, verify: bool = True,
                 precision: str = "float32") -> WhisperEncoder:
        """Load the encoder of a CTranslate2 Whisper folder (e.g. ``Systran/faster-whisper-base``).

        Parameters
        ----------
        path : str or os.PathLike, optional
            Folder holding ``model.bin``. Default: :func:`default_whisper_dir` (``$SER_WHISPER_DIR``,
            else :data:`DEFAULT_WHISPER_DIR`).
        verify : bool, default True
            If the folder has a ``SHA256SUMS`` file listing ``model.bin``, check the file against it
            first (about 0.3 s for 145 MB) so a damaged or swapped model fails loudly.
        precision : {"float32", "int8"}
            ``"int8"`` rounds every weight matrix to int8 with one scale per output channel
            (:func:`quantize_int8`), exactly as :func:`save_encoder` stores it, so an encoder
            loaded back from such an export computes the same features bit for bit.

        Raises
        ------
        ModelError
            If the folder or ``model.bin`` is missing, fails its checksum, is not a Whisper model or
            is malformed.
        """
        folder = Path(path) if path is not None else default_whisper_dir()
        model_bin = folder / "model.bin"
        if not model_bin.is_file():
            raise ModelError(f"{model_bin}: no CTranslate2 Whisper model here (set {WHISPER_DIR_ENV}?)")
        if verify:
            _check_sha256(folder, "model.bin")
        spec, _, variables = _read_model_bin(model_bin, "encoder/")
        if spec != "WhisperSpec":
            raise ModelError(f"{model_bin}: a CTranslate2 {spec!r} model, not WhisperSpec")
        if precision == "int8":
            return cls(_dequantize(quantize_int8(variables)))
        if precision != "float32":
            raise ValueError(f"precision={precision!r}: expected 'float32' or 'int8'")
        return cls(variables)

    @property
    def n_layers(self) -> int:
        """Number of hidden states returned: the embedding output plus one per transformer block (7)."""
        return len(self._blocks) + 1

    @property
    def dim(self) -> int:
        """Width of every hidden state (512 for Whisper-base)."""
        return self._dim

    @property
    def n_mels(self) -> int:
        """Mel bins the encoder expects (80 for Whisper-base)."""
        return self._n_mels

    def __call__(self, mel: np.ndarray) -> np.ndarray:
        """Run the encoder and return every hidden state.

        Parameters
        ----------
        mel : numpy.ndarray
            Log-mel features from :func:`whisper_log_mel`, ``(batch, 80, frames)`` or ``(80, frames)``,
            ``frames`` even and at most 3000. Shorter inputs are not padded to 30 s: attention then
            spans the given frames only, exactly as CTranslate2's ``encode`` does.

        Returns
        -------
        numpy.ndarray
            float32, ``(n_layers, batch, frames // 2, dim)`` = ``(7, batch, frames // 2, 512)``, batch 1
            for 2-D input. Index 0 is the convolutional front end plus positions, index ``i`` the output
            of transformer block ``i`` and the last index the final LayerNorm of the last block's
            output (what CTranslate2 ``encode`` returns), as Hugging Face ``output_hidden_states``.

        Raises
        ------
        ValueError
            If ``mel`` has the wrong shape, an odd or too large frame count, or non-finite values.
        """
        x = np.asarray(mel)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1] != self._n_mels or x.shape[0] == 0:
            raise ValueError(f"mel must have shape (batch, {self._n_mels}, frames) or ({self._n_mels}, frames), "
                             f"got {np.shape(mel)}")
        frames = x.shape[2]
        max_frames = 2 * self._positions.shape[0]
        if frames < 2 or frames % 2 or frames > max_frames:
            raise ValueError(f"mel must have an even number of frames between 2 and {max_frames}, got {frames}")
        x = x.astype(np.float32)
        if not np.all(np.isfinite(x)):
            raise ValueError("mel contains NaN or infinite values")

        batch, steps = x.shape[0], frames // 2
        states = np.empty((self.n_layers, batch, steps, self._dim), dtype=np.float32)
        # Time-major (batch, time, channels) throughout: convolutions become window @ kernel matmuls
        # and the transformer needs this layout anyway.
        h = _gelu(_conv1d_time_major(x.transpose(0, 2, 1), *self._conv1, stride=1))
        h = _gelu(_conv1d_time_major(h, *self._conv2, stride=2))
        h += self._positions[:steps]
        states[0] = h
        for i, block in enumerate(self._blocks, start=1):
            h = h + self._attention(_layer_norm(h, *block["attn_norm"]), block)
            w_in, b_in = block["ffn_in"]
            w_out, b_out = block["ffn_out"]
            hidden = _layer_norm(h, *block["ffn_norm"]) @ w_in
            hidden += b_in
            h = h + (_gelu(hidden) @ w_out + b_out)
            states[i] = h
        # The last block's raw output is not a returned state (HF convention): it is replaced by its
        # final LayerNorm, which is what the decoder (and CTranslate2 ``encode``) sees.
        states[-1] = _layer_norm(h, *self._final_norm)
        return states

    def _attention(self, x: np.ndarray, block: dict) -> np.ndarray:
        """Full multi-head self-attention of ``x`` ``(batch, time, dim)`` with a fused q/k/v projection."""
        batch, steps, dim = x.shape
        head_dim = dim // self._n_heads
        w_qkv, b_qkv = block["qkv"]
        qkv = x @ w_qkv
        # Whisper's key projection has no bias; CTranslate2 stores zeros there, so adding is harmless.
        qkv += b_qkv
        # (batch, time, 3, heads, head_dim) -> three (batch, heads, time, head_dim) views.
        q, k, v = qkv.reshape(batch, steps, 3, self._n_heads, head_dim).transpose(2, 0, 3, 1, 4)
        scores = (q * np.float32(1.0 / np.sqrt(head_dim))) @ k.transpose(0, 1, 3, 2)
        scores -= scores.max(axis=-1, keepdims=True)  # softmax without overflow
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, steps, dim)
        w_out, b_out = block["out"]
        out = context @ w_out
        out += b_out
        return out


def _check_sha256(folder: Path, name: str) -> None:
    """Compare ``folder/name`` with its line in ``folder/SHA256SUMS``; silent if either is absent."""
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        return
    expected = None
    for line in sums.read_text(encoding="utf-8").splitlines():
        digest, _, listed = line.strip().partition("  ")
        if listed.strip().lstrip("*") == name:  # "*" marks binary mode in sha256sum output
            expected = digest.strip().lower()
    if expected is None:
        return
    actual = sha256_file(folder / name)
    if actual != expected:
        raise ModelError(f"{folder / name}: SHA-256 {actual} does not match {expected} in {sums}; "
                         "the file was modified or damaged")


# --------------------------------------------------------------------------- export

_SCALE = ":scale"


def quantize_int8(variables: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Weight matrices → int8 with a float32 scale per output channel; the rest as float16.

    Symmetric, per output channel (first axis): ``q = round(w / s)``, ``s = max|w| / 127``.
    Biases, norms and positions stay as they were stored by CTranslate2 (float16), so the
    export is lossless for them. The result is what :func:`save_encoder` writes.
    """
    out: dict[str, np.ndarray] = {}
    for name, value in variables.items():
        value = np.asarray(value)
        if name.endswith("/weight") and value.ndim >= 2:
            w = value.astype(np.float32)
            scale = np.abs(w.reshape(w.shape[0], -1)).max(axis=1) / 127.0
            scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
            expand = scale.reshape((-1,) + (1,) * (w.ndim - 1))
            out[name] = np.clip(np.rint(w / expand), -127, 127).astype(np.int8)
            out[name + _SCALE] = scale
        elif np.issubdtype(value.dtype, np.floating):
            out[name] = value.astype(np.float16)
        else:
            out[name] = value
    return out


def _dequantize(stored: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for name, value in stored.items():
        if name.endswith(_SCALE):
            continue
        if name + _SCALE in stored:
            scale = stored[name + _SCALE].astype(np.float32)
            out[name] = value.astype(np.float32) * scale.reshape((-1,) + (1,) * (value.ndim - 1))
        else:
            out[name] = value
    return out


def save_encoder(path: str | os.PathLike, *, source: str | os.PathLike | None = None,
                 precision: str = "float32") -> Path:
    """Export the encoder of a CTranslate2 Whisper folder as one compressed ``.npz`` (arrays only).

    Parameters
    ----------
    path : path-like
        File to write (atomically).
    source : path-like, optional
        CTranslate2 folder (default: :func:`default_whisper_dir`), checksum-verified.
    precision : {"float32", "int8"}
        ``"float32"`` keeps the published float16 values (lossless: the same features
        as :meth:`WhisperEncoder.from_dir`, 38 MB); ``"int8"`` stores
        :func:`quantize_int8` (19 MB, the same features as ``from_dir(precision="int8")``).
    """
    import io

    from ser.utils import atomic_write_bytes

    folder = Path(source) if source is not None else default_whisper_dir()
    _check_sha256(folder, "model.bin")
    _, _, variables = _read_model_bin(folder / "model.bin", "encoder/")
    if precision == "int8":
        arrays = quantize_int8(variables)
    elif precision == "float32":
        # model.bin holds float16 values; storing them as float16 loses nothing.
        arrays = {k: v.astype(np.float16) if np.issubdtype(v.dtype, np.floating) else v for k, v in variables.items()}
    else:
        raise ValueError(f"precision={precision!r}: expected 'float32' or 'int8'")
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------- convenience


def encode_waveform(y: np.ndarray, encoder: WhisperEncoder) -> np.ndarray:
    """Every encoder layer for one 16 kHz mono clip.

    Parameters
    ----------
    y : numpy.ndarray
        1-D waveform at 16 kHz (at least 320 samples, at most 30 s are used).
    encoder : WhisperEncoder
        A loaded encoder.

    Returns
    -------
    numpy.ndarray
        float32, ``(n_layers, frames // 2, dim)`` = ``(7, frames // 2, 512)``, one vector per 20 ms,
        where ``frames = min(len(y) // 160 rounded down to even, 3000)``.

    Raises
    ------
    ValueError
        If ``y`` is not a usable waveform (see :func:`whisper_log_mel`).
    """
    n_samples = np.shape(y)[0] if np.ndim(y) == 1 else None
    # Whisper never sees more than 30 s at once; longer clips are cut rather than rejected.
    n_frames = None
    if n_samples is not None and n_samples // WHISPER_HOP > WHISPER_MAX_FRAMES:
        n_frames = WHISPER_MAX_FRAMES
    return encoder(whisper_log_mel(y, n_frames=n_frames))[:, 0]
