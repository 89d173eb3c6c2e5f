"""The emotion set and label encoding.

The order of :data:`EMOTIONS` is the fixed order used everywhere: model outputs,
score vectors, confusion-matrix rows and columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ser.errors import ManifestError

#: The eight RAVDESS emotions, in the RAVDESS code order (01 ... 08).
EMOTIONS: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
)

#: RAVDESS emotion code (the third field of a file name) -> emotion name.
RAVDESS_CODES: dict[str, str] = {f"{i:02d}": name for i, name in enumerate(EMOTIONS, start=1)}

# Common spellings seen in other manifests, mapped to our names.
_ALIASES: dict[str, str] = {
    "fear": "fearful",
    "fearfulness": "fearful",
    "disgusted": "disgust",
    "surprise": "surprised",
    "anger": "angry",
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
}


def normalize_label(label: str) -> str:
    """Return the canonical emotion name for ``label`` (case-insensitive, common aliases).

    Raises
    ------
    ManifestError
        If ``label`` is not one of :data:`EMOTIONS` or a known alias.
    """
    key = str(label).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in EMOTIONS:
        raise ManifestError(f"label={label!r}: unknown emotion; expected one of {', '.join(EMOTIONS)}")
    return key


def encode(labels: Iterable[str], classes: Sequence[str] = EMOTIONS) -> np.ndarray:
    """Map emotion names to integer indices into ``classes``.

    Returns
    -------
    numpy.ndarray
        int64 array of shape ``(n,)``.
    """
    index = {name: i for i, name in enumerate(classes)}
    try:
        return np.array([index[normalize_label(x)] for x in labels], dtype=np.int64)
    except KeyError as exc:
        raise ManifestError(f"label={exc.args[0]!r}: not among the model's classes {list(classes)}") from None


def decode(indices: Iterable[int], classes: Sequence[str] = EMOTIONS) -> list[str]:
    """Map integer indices back to emotion names."""
    return [classes[int(i)] for i in indices]
