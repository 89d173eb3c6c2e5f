"""Runtimes that run a model's network: ONNX Runtime (the default, no TensorFlow) or Keras.

Both take features of shape ``(n, F, T, 1)`` and return class probabilities as
float64 ``(n, n_classes)``. Both are safe to call from several threads at once
(an ONNX Runtime session's ``run`` is; a Keras call runs under a lock).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from ser.errors import ModelError


class OnnxRunner:
    """Run an exported ``model.onnx`` with ONNX Runtime, without TensorFlow.

    Parameters
    ----------
    path : str or path-like
        An ONNX file written by :func:`export_onnx`.
    threads : int, optional
        Threads for one model call (ONNX Runtime's ``intra_op_num_threads``);
        default: ONNX Runtime's choice (one per physical core).

    Raises
    ------
    ModelError
        Missing or unreadable file.

    Examples
    --------
    >>> runner = OnnxRunner("model/model.onnx", threads=1)   # doctest: +SKIP
    >>> runner(x[..., None]).shape                           # doctest: +SKIP
    (4, 8)
    """

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        if threads is not None and (not isinstance(threads, (int, np.integer)) or isinstance(threads, bool)
                                    or threads < 1):
            raise ValueError(f"threads={threads!r}: expected a positive integer or None")
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: ONNX model not found")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only; ORT's warnings are about its own graph rewrites
        if threads is not None:
            options.intra_op_num_threads = int(threads)
            # One model call runs one graph; no inter-op pool needed beyond the caller's thread.
            options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own untyped errors for bad files
            raise ModelError(f"{self.path}: cannot load ONNX model ({exc})") from None
        (inp,) = self._session.get_inputs()
        (out,) = self._session.get_outputs()
        self._input, self._output = inp.name, out.name
        # Dynamic dimensions come back as strings ("N"); keep them as None.
        self.input_shape: tuple[int | None, ...] = tuple(d if isinstance(d, int) else None for d in inp.shape)
        self.n_classes: int | None = out.shape[-1] if isinstance(out.shape[-1], int) else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch.

        Parameters
        ----------
        x : numpy.ndarray
            Features of shape ``(n, F, T, 1)`` (as the Keras model takes them);
            converted to float32.

        Returns
        -------
        numpy.ndarray
            Shape ``(n, n_classes)``, float64.
        """
        x = np.ascontiguousarray(x, dtype=np.float32)
        expected = self.input_shape
        if x.ndim != len(expected) or any(e is not None and e != d for e, d in zip(expected[1:], x.shape[1:])):
            shown = tuple("n" if e is None else e for e in expected)
            raise ValueError(f"x: shape {x.shape} does not match the model input {shown}")
        (probs,) = self._session.run([self._output], {self._input: x})
        return probs.astype(np.float64)

    def __repr__(self) -> str:
        return f"OnnxRunner({str(self.path)!r}, input_shape={self.input_shape}, n_classes={self.n_classes})"


class KerasRunner:
    """Run a Keras model like :class:`OnnxRunner` (for folders without ``model.onnx``, or ``runtime="keras"``).

    Parameters
    ----------
    model : keras.Model
        Outputs probabilities.
    """

    def __init__(self, model) -> None:
        self.model = model
        # Keras layers build and trace lazily on their first call: serialise calls so two
        # threads never race on that state.
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for features ``x`` of shape ``(n, F, T, 1)``, float64."""
        import keras

        with self._lock:
            # Calling the model directly avoids Keras' predict() set-up cost per call.
            out = self.model(x, training=False)
        return keras.ops.convert_to_numpy(out).astype(np.float64)


def load_keras(path: str | os.PathLike):
    """The Keras model in ``path``, loaded in safe mode (no code from the file runs).

    Raises
    ------
    ModelError
        One line naming the file (also when TensorFlow is not installed).
    """
    keras = require("keras", "train")
    try:
        return keras.models.load_model(Path(path), compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file
        raise ModelError(f"{path}: cannot load model ({exc})") from None


def require(module: str, extra: str):
    """Import ``module``, or raise a one-line :class:`ser.errors.SERError` naming the extra that installs it.

    Parameters
    ----------
    module : str
        Importable name (``"keras"``, ``"matplotlib.pyplot"``...).
    extra : str
        The ``speech-emotion-recognition[...]`` extra that brings it.
    """
    import importlib

    from ser.errors import MissingExtraError

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(f"{module.split('.')[0]} is not installed; this needs "
                                f"pip install \"speech-emotion-recognition[{extra}]\"") from None
