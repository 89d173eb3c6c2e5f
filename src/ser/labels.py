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

#: Label map of each corpus read by :func:`ser.dataset.index_corpus`: the emotion code
#: in the corpus's file names -> our emotion name, or ``None`` when the corpus's label
#: has no counterpart in :data:`EMOTIONS` (such clips are dropped and counted, never
#: guessed). Codes are compared as written here (readers normalise their case).
CORPUS_LABELS: dict[str, dict[str, str | None]] = {
    # RAVDESS: third field of 03-01-EE-II-SS-RR-AA.
    "ravdess": dict(RAVDESS_CODES),
    # CREMA-D: third field of 1001_DFA_ANG_XX (no calm or surprise in the corpus).
    "crema-d": {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral",
                "SAD": "sad"},
    # TESS: last field of OAF_back_angry; "ps" is "pleasant surprise".
    "tess": {"angry": "angry", "disgust": "disgust", "fear": "fearful", "happy": "happy", "neutral": "neutral",
             "ps": "surprised", "sad": "sad"},
    # SAVEE: letters before the number in DC_a01 / DC/a01 ("sa" sadness, "su" surprise, "a" anger).
    "savee": {"a": "angry", "d": "disgust", "f": "fearful", "h": "happy", "n": "neutral", "sa": "sad",
              "su": "surprised"},
    # EmoDB: sixth character of 03a01Wa (German initials: Wut/Ärger, Langeweile, Ekel, Angst, Freude,
    # Trauer, Neutral).
    "emodb": {"W": "angry", "L": None, "E": "disgust", "A": "fearful", "F": "happy", "T": "sad",
              "N": "neutral"},
    # EMOVO: first field of dis-f1-b1 (Italian: neutrale, gioia, tristezza, rabbia, paura, disgusto, sorpresa).
    "emovo": {"neu": "neutral", "gio": "happy", "tri": "sad", "rab": "angry", "pau": "fearful", "dis": "disgust",
              "sor": "surprised"},
    # ASED: the letter of n1-01-01-01-01 (its digit is the folder number 1-5 and must agree).
    "ased": {"n": "neutral", "f": "fearful", "h": "happy", "s": "sad", "a": "angry"},
    # TurEV-DB: second field of 1358_sk_beste (Turkish: kızgın, sakin, mutlu, hüzünlü).
    "turev": {"kz": "angry", "sk": "calm", "mt": "happy", "hl": "sad"},
}

#: English name of each corpus label mapped to ``None`` in :data:`CORPUS_LABELS`; these
#: names are the keys of the dropped-label counts of :func:`ser.dataset.index_corpus`.
DROPPED_LABEL_NAMES: dict[str, dict[str, str]] = {
    "emodb": {"L": "boredom"},
}

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
