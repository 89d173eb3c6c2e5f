"""Corpus indexing and manifests.

A *manifest* is a CSV with one clip per row. Two forms are accepted everywhere:

* the form written by :func:`write_manifest`:
  ``path,emotion,actor,gender,intensity,statement,repetition,corpus`` (manifests
  written before the ``corpus`` column was added are read as well);
* a generic form: ``path,label[,speaker]``.

Relative paths are resolved against the manifest's folder. In memory a manifest
is a list of :class:`Clip`, sorted by path.

Every audio file appears once per dataset: a file listed on two rows (compared by
resolved path, so ``a.wav``, ``./a.wav`` and a link to it are one file) is refused,
even when the rows are identical, because a repeated clip lands in a training and a
test fold at once and inflates scores; the same goes for one file reached through two
manifests or corpus folders (:func:`load_datasets`) or through a link inside a corpus
folder (:func:`index_corpus`). Odd manifest content (not UTF-8, NUL bytes, a wrong
delimiter, unbalanced quotes, extra fields, huge fields...) is a one-line
:class:`~ser.errors.ManifestError` naming the manifest and its line.

Corpus folders are indexed from their official file names by :func:`index_corpus`
(RAVDESS, CREMA-D, TESS, SAVEE, EmoDB, EMOVO, ASED, TurEV-DB; see :data:`CORPORA`), which maps each
corpus's labels to :data:`ser.labels.EMOTIONS` with
:data:`ser.labels.CORPUS_LABELS` and drops (and counts) labels with no counterpart.
"""

from __future__ import annotations

import csv
import errno
import io
import logging
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ser.errors import ManifestError
from ser.labels import CORPUS_LABELS, DROPPED_LABEL_NAMES, EMOTIONS, RAVDESS_CODES, normalize_label
from ser.utils import atomic_write_text

log = logging.getLogger(__name__)

#: Extensions read as audio when scanning folders (anything libsndfile decodes).
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".opus"})

#: Columns written by :func:`write_manifest` (the name predates the other corpora; ``corpus``
#: was added last, so older 7-column manifests still read).
RAVDESS_COLUMNS = ("path", "emotion", "actor", "gender", "intensity", "statement", "repetition", "corpus")
MANIFEST_COLUMNS = RAVDESS_COLUMNS
#: Corpora whose folders :func:`index_corpus` reads from the official file names.
CORPORA: tuple[str, ...] = ("ravdess", "crema-d", "tess", "savee", "emodb", "emovo", "ased", "turev")
#: Key of :func:`index_corpus`'s drop counts for audio files whose names follow no convention.
UNRECOGNISED = "unrecognised file name"
#: Key of :func:`index_corpus`'s drop counts for RAVDESS song and video files (modality/channel not 03-01).
RAVDESS_NON_SPEECH = "RAVDESS song or video"
#: Key of :func:`index_corpus`'s drop counts for symbolic links that point (in the end) back at themselves.
SYMLINK_LOOP = "symbolic link loop"
#: Key of :func:`index_corpus`'s drop counts for audio-named symbolic links to nothing.
BROKEN_LINK = "broken symbolic link"
#: Key of :func:`index_corpus`'s drop counts for symbolic links to folders, which indexing does not follow
#: (following them could index a tree twice or outside the corpus; pass the target folder instead).
LINKED_FOLDER = "symbolic link to a folder (not followed)"
_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}


@dataclass(frozen=True)
class Clip:
    """One labelled clip of a manifest.

    Attributes
    ----------
    path : pathlib.Path
        Absolute path of the audio file.
    label : str
        Emotion name from :data:`ser.labels.EMOTIONS`.
    speaker : str
        Speaker id ("" when unknown); splits are grouped by it.
    meta : dict
        Extra columns: ``gender``, ``intensity``, ``statement``, ``repetition`` where the
        corpus has them, and ``corpus`` (one of :data:`CORPORA`) for clips indexed from a
        corpus folder.
    """

    path: Path
    label: str
    speaker: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False)


def parse_ravdess_name(path: str | os.PathLike) -> Clip | None:
    """Parse a RAVDESS file name ``MM-VV-EE-II-SS-RR-AA.ext`` into a :class:`Clip`.

    Returns ``None`` for names that do not follow the convention or are not
    audio-only speech (modality 03, vocal channel 01).

    Raises
    ------
    ManifestError
        If the name has the RAVDESS shape but an impossible field value.
    """
    path = Path(path)
    match = _RAVDESS_NAME.match(path.stem)
    if not match:
        return None
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
    if modality != "03" or channel != "01":
        return None
    if emotion not in RAVDESS_CODES:
        raise ManifestError(f"{path}: emotion code {emotion} is not 01-08")
    if intensity not in ("01", "02") or statement not in _STATEMENTS or repetition not in ("01", "02"):
        raise ManifestError(f"{path}: malformed RAVDESS name (intensity/statement/repetition)")
    if not 1 <= int(actor) <= 24:
        raise ManifestError(f"{path}: actor {actor} is not 01-24")
    return Clip(
        path=path.resolve(),
        label=RAVDESS_CODES[emotion],
        speaker=str(int(actor)),
        meta={
            "gender": "male" if int(actor) % 2 else "female",
            "intensity": "normal" if intensity == "01" else "strong",
            "statement": int(statement),
            "repetition": int(repetition),
        },
    )


def index_ravdess(root: str | os.PathLike) -> list[Clip]:
    """Scan a RAVDESS folder (``Actor_XX/…``, any audio format) for speech clips.

    Files that are not RAVDESS speech clips are skipped with a logged count, and so are
    symbolic links that cannot be indexed (see :func:`index_corpus`).

    Raises
    ------
    ManifestError
        If ``root`` does not exist or holds no RAVDESS speech clip, or two entries are
        one file (a link to a clip of the same folder; naming both).
    """
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: not a folder")
    files, links = _scan(root)
    _warn_links(root, links)
    clips, skipped = [], 0
    for path in files:
        clip = parse_ravdess_name(path)
        if clip is None:
            skipped += 1
        else:
            clips.append(clip)
    if skipped:
        log.warning("%s: skipped %d audio files that are not RAVDESS speech clips", root, skipped)
    if not clips:
        raise ManifestError(f"{root}: no RAVDESS speech clips (expected Actor_XX/03-01-EE-II-SS-RR-AA.wav)")
    _refuse_same_file(root, clips, files)
    return clips


# --- other corpora ---------------------------------------------------------

@dataclass(frozen=True)
class _Name:
    """A file name read by a corpus's convention, before its label is mapped."""

    code: str  # the corpus's emotion code, as written in CORPUS_LABELS
    speaker: str  # the corpus's own speaker id (without the corpus prefix)
    meta: dict


_CREMA_D_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$", re.IGNORECASE)
_CREMA_D_LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
_TESS_SPEAKERS = ("OAF", "YAF")  # older and younger adult female
_SAVEE_NAME = re.compile(r"^(?:(DC|JE|JK|KL)_)?(sa|su|a|d|f|h|n)(\d\d)$", re.IGNORECASE)
_SAVEE_SPEAKERS = ("DC", "JE", "JK", "KL")  # four male speakers
_EMODB_NAME = re.compile(r"^(\d\d)([a-z]\d\d)([a-z])([a-z])$", re.IGNORECASE)
_EMODB_GENDERS = {"03": "male", "08": "female", "09": "female", "10": "male", "11": "male", "12": "male",
                  "13": "female", "14": "female", "15": "male", "16": "female"}
_EMOVO_NAME = re.compile(r"^([a-z]{3})-([fm][1-3])-([bldn]\d)$", re.IGNORECASE)
_ASED_NAME = re.compile(r"^([nfhsa])([1-5])-(\d\d)-(\d\d)-(0[12])-(\d\d)$", re.IGNORECASE)
_ASED_DIGITS = {"n": "1", "f": "2", "h": "3", "s": "4", "a": "5"}  # the digit after the letter, fixed by it
_TUREV_NAME = re.compile(r"^(\d{4})_([a-z]{2})_([^_\s]+)$", re.IGNORECASE)
_CORPUS_TITLES = {"ravdess": "RAVDESS speech", "crema-d": "CREMA-D", "tess": "TESS", "savee": "SAVEE",
                  "emodb": "EmoDB", "emovo": "EMOVO", "ased": "ASED", "turev": "TurEV-DB"}
_CORPUS_EXAMPLES = {"ravdess": "Actor_XX/03-01-EE-II-SS-RR-AA.wav", "crema-d": "AudioWAV/1001_DFA_ANG_XX.wav",
                    "tess": "OAF_angry/OAF_back_angry.wav", "savee": "DC_a01.wav or DC/a01.wav",
                    "emodb": "wav/03a01Wa.wav", "emovo": "m2/rab-m2-l3.wav",
                    "ased": "02Fearful/f2-03-02-02-65.wav", "turev": "Calm/1358_sk_beste.wav"}


def _read_crema_d(path: Path) -> _Name | None:
    """``1001_DFA_ANG_XX``: actor 1001-1091, sentence, emotion, level (LO/MD/HI/XX)."""
    match = _CREMA_D_NAME.match(path.stem)
    if not match:
        return None
    actor, sentence, code, level = (g.upper() for g in match.groups())
    if not 1001 <= int(actor) <= 1091 or level not in _CREMA_D_LEVELS:
        return None
    return _Name(code, actor, {"intensity": _CREMA_D_LEVELS[level], "statement": sentence})


def _read_tess(path: Path) -> _Name | None:
    """``OAF_back_angry``: speaker = first token, emotion = last token, word = the tokens between.

    A first token that is not OAF/YAF (the corpus has a few irregular names) falls back to
    the speaker prefix of the folder (``OAF_angry/``); ``…_pleasant_surprise(d)`` reads as ``ps``.
    """
    tokens = path.stem.split("_")
    if len(tokens) < 3:
        return None
    speaker = tokens[0].upper()
    if speaker not in _TESS_SPEAKERS:
        speaker = path.parent.name.split("_")[0].upper()
        if speaker not in _TESS_SPEAKERS:
            return None
    words, code = tokens[1:-1], tokens[-1].lower()
    if code in ("surprise", "surprised") and len(words) > 1 and words[-1].lower() == "pleasant":
        words, code = words[:-1], "ps"
    if not all(words):
        return None
    return _Name(code, speaker, {"gender": "female", "statement": "_".join(words)})


def _read_savee(path: Path) -> _Name | None:
    """``DC_a01`` (flat) or ``DC/a01`` (speaker folders): speaker, emotion letters, 2-digit number."""
    match = _SAVEE_NAME.match(path.stem)
    if not match:
        return None
    speaker = (match.group(1) or path.parent.name).upper()
    if speaker not in _SAVEE_SPEAKERS:
        return None
    return _Name(match.group(2).lower(), speaker, {"gender": "male", "statement": int(match.group(3))})


def _read_emodb(path: Path) -> _Name | None:
    """``03a01Fa``: speaker (2 digits), text code, emotion letter, version letter."""
    match = _EMODB_NAME.match(path.stem)
    if not match or match.group(1) not in _EMODB_GENDERS:
        return None
    speaker, text, code, version = match.groups()
    return _Name(code.upper(), speaker, {"gender": _EMODB_GENDERS[speaker], "statement": text.lower(),
                                         "repetition": version.lower()})


def _read_emovo(path: Path) -> _Name | None:
    """``rab-m2-l3``: emotion (3 letters), actor (f1-f3, m1-m3), sentence (b1-b3, l1-l4, n1-n5, d1-d2)."""
    match = _EMOVO_NAME.match(path.stem)
    if not match:
        return None
    code, actor, sentence = (g.lower() for g in match.groups())
    return _Name(code, actor, {"gender": "female" if actor[0] == "f" else "male", "statement": sentence})


def _read_ased(path: Path) -> _Name | None:
    """``f2-03-02-02-65``: emotion letter + its number, sentence, repetition, gender (01 woman), speaker.

    The speaker id alone names the speaker: a few speakers carry both gender codes in
    the release, so the gender is kept per clip as written and never joins the id.
    """
    match = _ASED_NAME.match(path.stem)
    if not match:
        return None
    letter, digit, sentence, repetition, gender, speaker = match.groups()
    letter = letter.lower()
    if _ASED_DIGITS[letter] != digit or not 1 <= int(speaker) <= 65:
        return None
    return _Name(letter, speaker, {"gender": "female" if gender == "01" else "male", "statement": int(sentence),
                                   "repetition": int(repetition)})


def _read_turev(path: Path) -> _Name | None:
    """``1358_sk_beste``: speaker (4 digits), emotion code (kz, sk, mt, hl), the word."""
    match = _TUREV_NAME.match(path.stem)
    if not match:
        return None
    speaker, code, word = match.groups()
    return _Name(code.lower(), speaker, {"statement": word.lower()})


_READERS = {"crema-d": _read_crema_d, "tess": _read_tess, "savee": _read_savee, "emodb": _read_emodb,
            "emovo": _read_emovo, "ased": _read_ased, "turev": _read_turev}


def _corpus_key(name: str) -> str:
    return re.sub(r"[\s_-]", "", str(name).lower())


def _check_corpus(corpus: str, *, auto: bool) -> str:
    """Canonical corpus name (case, ``-``/``_`` ignored: ``CREMA_D`` → ``crema-d``), or ``auto``."""
    names = {_corpus_key(c): c for c in CORPORA}
    if auto and _corpus_key(corpus) == "auto":
        return "auto"
    if _corpus_key(corpus) not in names:
        expected = ("auto or " if auto else "") + "one of " + ", ".join(CORPORA)
        raise ManifestError(f"corpus={corpus!r}: unknown corpus; expected {expected}")
    return names[_corpus_key(corpus)]


def _parse(path: Path, corpus: str) -> tuple[Clip | None, str | None]:
    """``(clip, None)``, or ``(None, key)`` with the drop-count key (dropped label or unrecognised name)."""
    if corpus == "ravdess":
        clip = parse_ravdess_name(path)
        if clip is None:
            return None, RAVDESS_NON_SPEECH if _RAVDESS_NAME.match(path.stem) else UNRECOGNISED
        return replace(clip, meta={**clip.meta, "corpus": corpus}), None
    name = _READERS[corpus](path)
    labels = CORPUS_LABELS[corpus]
    if name is None or name.code not in labels:
        return None, UNRECOGNISED
    label = labels[name.code]
    if label is None:
        return None, DROPPED_LABEL_NAMES.get(corpus, {}).get(name.code, f"{corpus} {name.code}")
    return Clip(path=path.resolve(), label=label, speaker=f"{corpus}:{name.speaker}",
                meta={**name.meta, "corpus": corpus}), None


def _matches(path: Path, corpus: str) -> bool:
    """Whether the name follows the corpus's convention (a dropped label still matches)."""
    if corpus == "ravdess":
        return _RAVDESS_NAME.match(path.stem) is not None
    name = _READERS[corpus](path)
    return name is not None and name.code in CORPUS_LABELS[corpus]


def parse_corpus_name(path: str | os.PathLike, corpus: str) -> Clip | None:
    """Parse a file name by the official naming of ``corpus`` into a :class:`Clip`.

    Parameters
    ----------
    path : str or path-like
        Audio file; only its name (and, for TESS and SAVEE, its folder's name) is read.
    corpus : str
        One of :data:`CORPORA` (case, ``-`` and ``_`` ignored).

    Returns
    -------
    Clip or None
        The clip, with ``meta["corpus"]`` and, where known, ``meta["gender"]``; speakers
        other than RAVDESS's are prefixed with the corpus (``"emodb:03"``). ``None`` when
        the name does not follow the convention or its label has no counterpart in
        :data:`ser.labels.EMOTIONS` (:func:`index_corpus` counts both).

    Raises
    ------
    ManifestError
        If ``corpus`` is unknown, or (RAVDESS only, as :func:`parse_ravdess_name`) the
        name has the RAVDESS shape but an impossible field value.
    """
    return _parse(Path(path), _check_corpus(corpus, auto=False))[0]


def _scan(root: Path) -> tuple[list[Path], dict[str, list[Path]]]:
    """Audio files under ``root`` (sorted), and the symbolic links left out, by drop-count key.

    ``rglob`` neither follows links to folders nor says why an audio-named link is not a
    file; both would otherwise vanish without a word, so they are sorted out here:
    loops (:data:`SYMLINK_LOOP`, whatever their name), audio-named links to nothing
    (:data:`BROKEN_LINK`) and links to folders (:data:`LINKED_FOLDER`). Links to files are
    ordinary files (their clips carry the resolved path).
    """
    files: list[Path] = []
    links: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*")):
        audio = path.suffix.lower() in AUDIO_EXTENSIONS
        if audio and path.is_file():
            files.append(path)
        elif path.is_symlink():
            try:
                target_is_dir = path.is_dir()
                os.stat(path)  # is_dir() says False for loops and dangling links; stat tells them apart
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    links.setdefault(SYMLINK_LOOP, []).append(path)
                elif audio:
                    links.setdefault(BROKEN_LINK, []).append(path)
                continue
            if target_is_dir:
                links.setdefault(LINKED_FOLDER, []).append(path)
    return files, links


def _warn_links(root: Path, links: dict[str, list[Path]]) -> None:
    if links:
        first = min(p for paths in links.values() for p in paths)
        log.warning("%s: skipped %d symbolic links (%s); first: %s", root, sum(map(len, links.values())),
                    ", ".join(f"{k}: {len(v)}" for k, v in sorted(links.items())), first)


def _refuse_same_file(root: Path, clips: list[Clip], files: list[Path]) -> None:
    """Refuse one file indexed as two clips (a link to a clip of the same folder), naming both entries."""
    counts = Counter(c.path for c in clips)
    twice = sorted(p for p, n in counts.items() if n > 1)
    if twice:
        names = [str(f) for f in files if f.resolve() == twice[0]]  # only on the way to the error
        raise ManifestError(f"{root}: {' and '.join(names[:2])} are the same audio file ({twice[0]}); remove one "
                            "(a clip listed twice lands in a training and a test fold at once)")


def _detect_corpus(root: Path, files: list[Path], links: dict[str, list[Path]] | None = None) -> str:
    """Majority vote of the corpus naming conventions over the audio files of ``root``."""
    if not files:
        skipped = ", ".join(f"{k}: {len(v)}" for k, v in sorted((links or {}).items()))
        raise ManifestError(f"{root}: no audio files; cannot detect the corpus" + (f" (skipped {skipped})"
                                                                                    if skipped else ""))
    votes = Counter({corpus: sum(_matches(p, corpus) for p in files) for corpus in CORPORA})
    best = max(votes.values())
    if best == 0:
        raise ManifestError(f"{root}: cannot detect the corpus: none of {len(files)} audio files is named like "
                            f"{', '.join(CORPORA)} (pass the corpus or use a manifest CSV)")
    winners = [c for c in CORPORA if votes[c] == best]
    if len(winners) > 1:
        raise ManifestError(f"{root}: cannot detect the corpus: {best} audio files each named like "
                            f"{' and '.join(winners)} (pass the corpus)")
    others = {c: n for c, n in votes.items() if n and c != winners[0]}
    log.info("%s: detected %s (%d of %d audio files)%s", root, winners[0], best, len(files),
             f"; also named like {others}" if others else "")
    return winners[0]


def _crema_d_genders(root: Path) -> dict[str, str]:
    """Actor id → gender from CREMA-D's ``VideoDemographics.csv`` in ``root`` or its parent, if there."""
    found = [d / "VideoDemographics.csv" for d in (root, root.parent) if (d / "VideoDemographics.csv").is_file()]
    if not found:
        return {}
    try:
        rows = list(csv.DictReader(io.StringIO(found[0].read_text(encoding="utf-8-sig"))))
        genders = {row["ActorID"].strip(): row["Sex"].strip().lower() for row in rows}
    except (OSError, UnicodeDecodeError, csv.Error, KeyError, AttributeError) as exc:
        log.warning("%s: cannot read actor genders (%s); clips have no gender", found[0], exc)
        return {}
    return {actor: sex for actor, sex in genders.items() if sex in ("male", "female")}


def index_corpus(root: str | os.PathLike, corpus: str = "auto") -> tuple[list[Clip], dict[str, int]]:
    """Index a corpus folder (any depth, any audio format) from its official file names.

    Parameters
    ----------
    root : str or path-like
        Folder holding the corpus's audio files.
    corpus : str
        One of :data:`CORPORA`, or ``"auto"`` to pick the corpus whose naming convention
        most audio files follow. Naming: RAVDESS ``03-01-05-02-01-02-13``; CREMA-D
        ``1001_DFA_ANG_XX``; TESS ``OAF_back_angry``; SAVEE ``DC_a01`` or ``DC/a01``;
        EmoDB ``03a01Wa``; EMOVO ``rab-m2-l3``; ASED ``f2-03-02-02-65``; TurEV-DB ``1358_sk_beste``.

    Returns
    -------
    clips : list of Clip
        Sorted by path; labels mapped by :data:`ser.labels.CORPUS_LABELS`; ``meta["corpus"]``
        set and ``meta["gender"]`` where known (CREMA-D: only with its
        ``VideoDemographics.csv`` in ``root`` or its parent). Speakers are ``"1"``..``"24"``
        for RAVDESS (as :func:`index_ravdess`) and ``"<corpus>:<id>"`` otherwise
        (``"crema-d:1001"``, ``"tess:OAF"``, ``"savee:DC"``, ``"emodb:03"``, ``"emovo:m2"``,
        ``"ased:65"``, ``"turev:1358"``), so they are
        unique across corpora.
    dropped : dict
        Audio files left out, counted by reason: the English name of a label with no
        counterpart (``{"boredom": 81}``), :data:`UNRECOGNISED` for names that follow
        no convention of the corpus, :data:`RAVDESS_NON_SPEECH`; and symbolic links that
        cannot be indexed: :data:`SYMLINK_LOOP`, :data:`BROKEN_LINK`, :data:`LINKED_FOLDER`
        (indexing never follows links to folders). Also logged at WARNING, links with the
        first one's path.

    Raises
    ------
    ManifestError
        If ``corpus`` is unknown, ``root`` is not a folder, auto-detection finds no (or a
        tied) convention, no clip is left, a RAVDESS name has an impossible field value,
        or two entries are one file (a link to a clip of the same folder; naming both).
    """
    corpus = _check_corpus(corpus, auto=True)
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: not a folder")
    files, links = _scan(root)
    _warn_links(root, links)
    if corpus == "auto":
        corpus = _detect_corpus(root, files, links)
    genders = _crema_d_genders(root) if corpus == "crema-d" else {}
    clips: list[Clip] = []
    dropped: Counter = Counter()
    first_unrecognised = None
    for path in files:
        clip, reason = _parse(path, corpus)
        if clip is None:
            dropped[reason] += 1
            first_unrecognised = first_unrecognised or (path if reason == UNRECOGNISED else None)
            continue
        actor = clip.speaker.removeprefix("crema-d:")
        if actor in genders:
            clip = replace(clip, meta={"gender": genders[actor], **clip.meta})
        clips.append(clip)
    dropped_counts = dict(sorted(dropped.items()))
    title = _CORPUS_TITLES[corpus]
    links_counts = {k: len(v) for k, v in sorted(links.items())}
    if dropped:
        example = f"; first unrecognised: {first_unrecognised.name}" if first_unrecognised else ""
        log.warning("%s: %s: dropped %d of %d audio files (%s)%s", root, title, sum(dropped.values()), len(files),
                    ", ".join(f"{k}: {v}" for k, v in dropped_counts.items()), example)
    dropped_counts = dict(sorted({**dropped_counts, **links_counts}.items()))
    if not clips:
        kept = f"; dropped {dropped_counts}" if dropped_counts else ""
        raise ManifestError(f"{root}: no {title} clips (expected {_CORPUS_EXAMPLES[corpus]}){kept}")
    _refuse_same_file(root, clips, files)
    return sorted(clips, key=lambda c: str(c.path)), dropped_counts


def _clip(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters (with an ellipsis) to quote it in a one-line message."""
    return text if len(text) <= limit else text[:limit] + "…"


def _shown(value: object, limit: int = 240) -> str:
    """A path or value as it reads in a message: as is when short and printable, else quoted and clipped.

    Keeps every message on one line (a quoted line break stays ``\\n``) and short (a
    field can be 128 KiB).
    """
    text = str(value)
    return text if text.isprintable() and len(text) <= limit else repr(_clip(text, limit))


_LINE_BREAKS = re.compile(r"\r\n?|\n")


def _line_at(text: str, offset: int) -> int:
    """1-based line of ``text[offset]``, counting ``\\n``, ``\\r\\n`` and ``\\r`` line ends as the CSV reader does."""
    return len(_LINE_BREAKS.findall(text, 0, offset)) + 1


def write_manifest(clips: list[Clip], path: str | os.PathLike) -> Path:
    """Write clips as a manifest CSV (:data:`MANIFEST_COLUMNS`), atomically.

    Metadata a clip does not have is written as an empty cell.

    Raises
    ------
    ManifestError
        If a value would not read back as written (a line break or NUL anywhere, spaces
        around a path or speaker, which :func:`read_manifest` strips); nothing is written.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for c in clips:
        row = [str(v) for v in (c.path, c.label, c.speaker, c.meta.get("gender", ""), c.meta.get("intensity", ""),
                                c.meta.get("statement", ""), c.meta.get("repetition", ""), c.meta.get("corpus", ""))]
        for name, value in zip(MANIFEST_COLUMNS, row):
            if any(ch in value for ch in "\r\n\0") or (name in ("path", "actor") and value != value.strip()):
                raise ManifestError(f"{path}: {name}={_shown(value)} of clip {_shown(c.path)} cannot be written to a "
                                    "manifest: line breaks, NUL and (in paths and speakers) surrounding spaces do "
                                    "not read back")
        writer.writerow(row)
    return atomic_write_text(path, buf.getvalue())


def _decode(path: Path, data: bytes) -> str:
    """UTF-8 text of a manifest (a leading BOM dropped), or a ManifestError naming the line of the first bad byte."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # exc.object is what was decoded (without the BOM), so exc.start indexes it, not ``data``.
        before = exc.object[:exc.start].decode("utf-8")  # the first bad byte: all before it decodes
        line = _line_at(before, len(before))
        raise ManifestError(f"{path}:{line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save the manifest "
                            "as UTF-8") from None
    if "\0" in text:  # no path or label holds one; UTF-16 without a BOM is the usual cause
        raise ManifestError(f"{path}:{_line_at(text, text.index(chr(0)))}: NUL byte in the manifest (a binary file, "
                            "or UTF-16 text? save it as UTF-8)")
    return text


def _rows(path: Path, text: str):
    """``(line, fields)`` of each non-blank CSV record, ``line`` being the record's first line."""
    # newline="" hands \r, \n and \r\n line ends to the CSV reader untranslated, so quoted fields keep theirs and
    # old CR-only files split into lines; strict=True refuses stray quotes instead of guessing what they meant.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    while True:
        line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            hint = ": an unbalanced quote?" if "end of data" in str(exc) else ""
            raise ManifestError(f"{path}:{line}: malformed CSV ({exc}{hint})") from None
        if any(f.strip() for f in fields):  # blank lines and all-empty rows (",,") hold no clip
            if any("\n" in f or "\r" in f for f in fields):
                raise ManifestError(f"{path}:{line}: line break inside a quoted field (an unbalanced quote?)")
            yield line, fields


def _header(path: Path, line: int, fields: list[str], labels: bool) -> tuple[list[str], str | None, str | None]:
    """Lower-cased column names, the label column and the speaker column, or a ManifestError."""
    columns = [c.strip().lower() for c in fields]
    repeated = [(c, n) for c, n in Counter(columns).items() if c and n > 1]
    if repeated:
        raise ManifestError(f"{path}:{line}: column {_clip(repeated[0][0])!r} appears {repeated[0][1]} times in "
                            "the header")
    label_col = "emotion" if "emotion" in columns else "label" if "label" in columns else None
    if "path" not in columns or (label_col is None and labels):
        hint = ""
        if len(fields) == 1:
            delimiter = next((d for d in ";\t|" if d in fields[0]), None)
            if delimiter:
                hint = f"; the header has no comma (is {delimiter!r} the delimiter? manifests are comma-separated)"
        shown = [_clip(c) for c in columns[:20]] + (["…"] if len(columns) > 20 else [])
        raise ManifestError(f"{path}:{line}: expected columns path and label (or emotion), found {shown}{hint}")
    speaker_col = "actor" if "actor" in columns else "speaker" if "speaker" in columns else None
    return columns, label_col, speaker_col


def _read_entries(path: str | os.PathLike, *, check_files: bool, labels: bool) -> list[tuple[Clip, int]]:
    """:func:`read_manifest`'s clips with the line of each, in file order (for messages naming lines)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found") from None
    except IsADirectoryError:
        raise ManifestError(f"{path}: is a folder, not a manifest CSV") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the manifest's own path
        raise ManifestError(f"{path}: cannot read manifest ({exc})") from None
    rows = _rows(path, _decode(path, data))
    first = next(rows, None)
    if first is None:
        raise ManifestError(f"{path}: empty manifest (expected a header line: path,label[,speaker])")
    columns, label_col, speaker_col = _header(path, *first, labels)
    entries: list[tuple[Clip, int]] = []
    missing: list[tuple[int, Path]] = []
    for line, fields in rows:
        if len(fields) > len(columns) and any(f.strip() for f in fields[len(columns):]):
            # Trailing empty cells are harmless; anything else is a value with no column, most often a path
            # with an unquoted comma, whose row would otherwise be read shifted.
            raise ManifestError(f"{path}:{line}: {len(fields)} fields, but the header has {len(columns)} "
                                "(quote values that hold commas)")
        row = dict(zip(columns, fields))
        raw = row.get("path", "").strip()
        if not raw:
            raise ManifestError(f"{path}:{line}: empty path")
        label = ""
        if labels:
            value = row.get(label_col, "")
            try:
                label = normalize_label(value)
            except ManifestError:
                raise ManifestError(f"{path}:{line}: label={_clip(value)!r}: unknown emotion; expected one of "
                                    f"{', '.join(EMOTIONS)}") from None
        audio = Path(raw) if os.path.isabs(raw) else (path.parent / raw)
        try:
            resolved = audio.resolve()
            if check_files and not audio.is_file():
                missing.append((line, audio))
        except RuntimeError:  # Path.resolve's "Symlink loop from ..." (Python < 3.13)
            raise ManifestError(f"{path}:{line}: cannot use path {_clip(raw)!r} (symbolic link loop)") from None
        except OSError as exc:  # a name too long for the file system, ...
            raise ManifestError(f"{path}:{line}: cannot use path {_clip(raw)!r} "
                                f"({exc.strerror or exc})") from None
        meta = {k: row[k] for k in MANIFEST_COLUMNS[3:] if row.get(k)}
        speaker = row.get(speaker_col, "").strip() if speaker_col else ""
        entries.append((Clip(path=resolved, label=label, speaker=speaker, meta=meta), line))
    if not entries:
        raise ManifestError(f"{path}: manifest has no rows")
    _refuse_duplicates(path, entries)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ManifestError(f"{path}:{missing[0][0]}: audio file not found: {_shown(missing[0][1])}{more}")
    return entries


def _refuse_duplicates(path: Path, entries: list[tuple[Clip, int]]) -> None:
    """Refuse a file listed on several rows (the first such file, in file order), naming its lines."""
    lines: dict[Path, list[int]] = {}
    for clip, line in entries:
        lines.setdefault(clip.path, []).append(line)
    repeated = [p for p, ls in lines.items() if len(ls) > 1]
    if not repeated:
        return
    file = repeated[0]
    rows = [clip for clip, _ in entries if clip.path == file]
    labels_seen = list(dict.fromkeys(c.label for c in rows))
    speakers = list(dict.fromkeys(c.speaker for c in rows))
    if len(labels_seen) > 1:
        how = f"with different labels ({', '.join(labels_seen)})"
    elif len(speakers) > 1:
        how = f"with different speakers ({', '.join(_shown(s, 30) or '(none)' for s in speakers[:5])})"
    else:
        how = "with the same label and speaker"
    shown_lines = ", ".join(map(str, lines[file][:10])) + (", …" if len(lines[file]) > 10 else "")
    others = f"; {len(repeated) - 1} more files are listed twice" if len(repeated) > 1 else ""
    raise ManifestError(f"{path}: {_shown(file)} is listed {len(rows)} times (lines {shown_lines}) {how}; keep one "
                        f"row per file (a clip listed twice lands in a training and a test fold at once){others}")


def read_manifest(path: str | os.PathLike, *, check_files: bool = True, labels: bool = True) -> list[Clip]:
    """Read a manifest CSV (RAVDESS or generic form) and validate every row.

    With ``labels=False`` (clips to predict), the label column is optional and
    its values are not checked; clips get the label ``""``.

    The manifest must be UTF-8 (a BOM is dropped) and comma-separated, with any line
    ends; blank lines and rows of empty cells are skipped, trailing empty cells
    ignored. Each audio file may appear on one row only (paths compared resolved),
    whatever the labels: duplicates are refused rather than merged, since a repeated
    training clip would sit in a training and a test fold at once.

    Raises
    ------
    ManifestError
        One line naming the manifest and, where there is one, the line (the header is
        line 1): missing, unreadable or empty manifest; not UTF-8, NUL bytes,
        malformed CSV (stray or unbalanced quotes, fields over 128 KiB, line breaks in
        a field); no ``path`` or label column (with a hint when another delimiter is
        used), a column named twice; more values than columns; an empty or unusable
        path (symbolic link loop, too long); an unknown emotion; a file listed on
        several rows (naming the lines); audio files that do not exist (naming the
        first, with a count).
    """
    return sorted((clip for clip, _ in _read_entries(path, check_files=check_files, labels=labels)),
                  key=lambda c: str(c.path))


def load_dataset(spec: str | os.PathLike) -> list[Clip]:
    """A manifest CSV or a corpus folder (detected by :func:`index_corpus`) → clips sorted by path.

    Drops of a corpus folder are logged at WARNING; use :func:`index_corpus` for their counts.
    """
    return sorted((clip for clip, _ in _load_located(spec)), key=lambda c: str(c.path))


def _load_located(spec: str | os.PathLike) -> list[tuple[Clip, str]]:
    """Clips of one spec, each with where it came from: ``manifest:line``, or the corpus folder."""
    if not str(spec).strip():  # Path("") is "." and would index the working directory
        raise ManifestError("dataset path is empty: expected a manifest CSV or corpus folder")
    path = Path(spec)
    if path.is_dir():
        return [(clip, str(spec)) for clip in index_corpus(path)[0]]
    return [(clip, f"{spec}:{line}") for clip, line in _read_entries(path, check_files=True, labels=True)]


def load_datasets(specs: Sequence[str | os.PathLike]) -> list[Clip]:
    """Several manifests and/or corpus folders (see :func:`load_dataset`) → one list of clips.

    Parameters
    ----------
    specs : sequence of str or path-like
        Manifest CSVs and corpus folders; a single spec is accepted as well.

    Returns
    -------
    list of Clip
        All clips, sorted by path. With one spec this equals ``load_dataset(spec)``.

    Raises
    ------
    ManifestError
        If ``specs`` is empty or holds an empty path, if a spec is given twice, if any
        spec fails to load, or if an audio file is reached by two specs (compared
        resolved; naming the file, both specs with the manifest line, and both labels
        when they differ).
    """
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    if not specs:
        raise ManifestError("no dataset given: expected at least one manifest CSV or corpus folder")
    given: dict[str, str | os.PathLike] = {}
    for spec in specs:
        key = os.path.normpath(os.path.abspath(spec)) if str(spec).strip() else ""
        if key and key in given:  # otherwise reported as every clip being a duplicate of itself
            raise ManifestError(f"{spec}: dataset given twice (as {given[key]} and {spec})")
        given[key] = spec
    owner: dict[Path, tuple[Clip, str]] = {}
    clips: list[Clip] = []
    for spec in specs:
        loaded = _load_located(spec)
        for clip, where in loaded:
            if clip.path in owner:
                other, there = owner[clip.path]
                labels = f"; labelled {other.label} there, {clip.label} here" if other.label != clip.label else ""
                raise ManifestError(f"{where}: {_shown(clip.path)} is also in {there} (duplicate clip{labels})")
        owner.update((clip.path, (clip, where)) for clip, where in loaded)
        clips.extend(clip for clip, _ in loaded)
    return sorted(clips, key=lambda c: str(c.path))


def summarize(clips: list[Clip], *, with_audio: bool = True) -> dict:
    """Class balance, speakers and (optionally) durations, rates and channels.

    Returns
    -------
    dict
        ``{"clips", "labels": {label: n}, "speakers": {speaker: n}, "duration_s":
        {"min", "mean", "max", "total"}, "sample_rates": {sr: n}, "channels": {n: count}}``
    """
    import soundfile as sf

    out: dict = {
        "clips": len(clips),
        "labels": dict(sorted(Counter(c.label for c in clips).items())),
        "speakers": dict(sorted(Counter(c.speaker or "?" for c in clips).items(),
                                key=lambda kv: (len(kv[0]), kv[0]))),
    }
    if with_audio:
        durations, rates, channels, unreadable = [], Counter(), Counter(), 0
        for c in clips:
            try:
                info = sf.info(str(c.path))
            except Exception:  # noqa: BLE001 - counted and reported, not fatal for a summary
                unreadable += 1
                continue
            durations.append(info.frames / info.samplerate)
            rates[info.samplerate] += 1
            channels[info.channels] += 1
        if durations:
            out["duration_s"] = {"min": round(min(durations), 3), "mean": round(sum(durations) / len(durations), 3),
                                 "max": round(max(durations), 3), "total": round(sum(durations), 1)}
        out["sample_rates"] = dict(sorted(rates.items()))
        out["channels"] = dict(sorted(channels.items()))
        out["unreadable"] = unreadable
    return out
