"""Tests for the corpus readers of ser.dataset (CREMA-D, TESS, SAVEE, EmoDB, RAVDESS) and their label maps."""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.dataset import (
    BROKEN_LINK,
    CORPORA,
    LINKED_FOLDER,
    MANIFEST_COLUMNS,
    RAVDESS_NON_SPEECH,
    SYMLINK_LOOP,
    UNRECOGNISED,
    index_corpus,
    index_ravdess,
    load_dataset,
    load_datasets,
    parse_corpus_name,
    read_manifest,
    write_manifest,
)
from ser.errors import ManifestError
from ser.labels import CORPUS_LABELS, DROPPED_LABEL_NAMES, EMOTIONS, RAVDESS_CODES

SR = 8000


def wav(path: Path) -> Path:
    """A tiny (20 ms) mono wav; the readers only look at names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(SR // 50, dtype=np.float32), SR)
    return path


def write_all(root: Path, names) -> Path:
    for name in names:
        wav(root / name)
    return root


# --- synthetic corpora, named by each corpus's convention -----------------------------------------

CREMA_D = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
TESS = {"angry": "angry", "disgust": "disgust", "fear": "fearful", "happy": "happy", "neutral": "neutral",
        "ps": "surprised", "sad": "sad"}
SAVEE = {"a": "angry", "d": "disgust", "f": "fearful", "h": "happy", "n": "neutral", "sa": "sad", "su": "surprised"}
EMODB = {"W": "angry", "E": "disgust", "A": "fearful", "F": "happy", "N": "neutral", "T": "sad"}  # L: boredom


@pytest.fixture()
def crema_d(tmp_path) -> Path:
    """CREMA-D/AudioWAV: 3 actors x 6 emotions (levels LO/MD/HI/XX), a junk file and an impossible actor."""
    root = tmp_path / "CREMA-D" / "AudioWAV"
    levels = ("LO", "MD", "HI", "XX")
    names = [f"{actor}_{sentence}_{code}_{levels[i % 4]}.wav"
             for actor in (1001, 1012, 1091) for i, code in enumerate(CREMA_D) for sentence in ("DFA", "IEO")]
    write_all(root, names + ["notes.wav", "1092_DFA_ANG_XX.wav", "1001_DFA_ANG_ZZ.wav"])
    (root / "readme.txt").write_text("not audio")
    return root


@pytest.fixture()
def tess(tmp_path) -> Path:
    """TESS: speaker+emotion folders (mixed case, both surprise spellings), irregular names, one junk name."""
    root = tmp_path / "TESS"
    names = []
    for speaker in ("OAF", "YAF"):
        for code in TESS:
            folder = f"{speaker}_{code}"
            if code == "ps":  # both spellings occur
                folder = f"{speaker}_pleasant_surprise" + ("d" if speaker == "YAF" else "")
            elif code == "disgust":
                folder = folder.lower()
            names += [f"{folder}/{speaker}_{word}_{code}.wav" for word in ("back", "dog")]
    names += [
        "OAF_neutral/OA_bite_neutral.wav",  # irregular speaker token: speaker from the folder
        "YAF_happy/YAF_thumb_up_happy.wav",  # "_" inside the word
        "OAF_Fear/OAF_chair_Fear.wav",  # upper-case emotion
        "YAF_pleasant_surprised/YAF_germ_pleasant_surprise.wav",  # spelled out instead of "ps"
        "OAF_angry/OAF_angry.wav",  # junk: no word
    ]
    return write_all(root, names)


@pytest.fixture()
def savee_flat(tmp_path) -> Path:
    """SAVEE flat (``AudioData/DC_a01.wav``): 4 speakers x 7 emotions x 2, plus two junk names."""
    root = tmp_path / "SAVEE" / "ALL"
    names = [f"{spk}_{code}{n:02d}.wav" for spk in ("DC", "JE", "JK", "KL") for code in SAVEE for n in (1, 15)]
    return write_all(root, names + ["XX_a01.wav", "DC_b01.wav"])


@pytest.fixture()
def savee_folders(tmp_path) -> Path:
    """SAVEE speaker folders (``AudioData/DC/a01.wav``)."""
    root = tmp_path / "SAVEE" / "AudioData"
    names = [f"{spk}/{code}{n:02d}.wav" for spk in ("DC", "KL") for code in SAVEE for n in (2, 30)]
    return write_all(root, names + ["Other/a01.wav"])


@pytest.fixture()
def emodb(tmp_path) -> Path:
    """EmoDB ``wav/``: 4 speakers x 7 emotions including boredom (L), plus an unknown speaker."""
    root = tmp_path / "emodb" / "wav"
    names = [f"{spk}{text}{code}{version}.wav" for spk in ("03", "08", "15", "16") for code in "WLEAFTN"
             for text, version in (("a01", "a"), ("b10", "b"))]
    return write_all(root, names + ["17a01Wa.wav", "03a01Xa.wav"])


# --- label maps ---------------------------------------------------------------------------------

def test_corpus_label_maps():
    """One map per corpus; every target is one of EMOTIONS or None, and every None has a drop name."""
    assert tuple(CORPUS_LABELS) == CORPORA
    assert CORPUS_LABELS["ravdess"] == RAVDESS_CODES
    assert CORPUS_LABELS["crema-d"] == CREMA_D
    assert CORPUS_LABELS["tess"] == TESS
    assert CORPUS_LABELS["savee"] == SAVEE
    assert CORPUS_LABELS["emodb"] == {**EMODB, "L": None}
    for corpus, table in CORPUS_LABELS.items():
        assert all(v is None or v in EMOTIONS for v in table.values()), corpus
        assert {k for k, v in table.items() if v is None} == set(DROPPED_LABEL_NAMES.get(corpus, {})), corpus
    assert DROPPED_LABEL_NAMES == {"emodb": {"L": "boredom"}}


# --- file names ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("corpus", "name", "label", "speaker", "meta"), [
    ("crema-d", "AudioWAV/1001_DFA_ANG_XX.wav", "angry", "crema-d:1001",
     {"intensity": "unspecified", "statement": "DFA"}),
    ("crema-d", "1091_IEO_HAP_HI.flac", "happy", "crema-d:1091", {"intensity": "high", "statement": "IEO"}),
    ("crema-d", "1050_TIE_SAD_LO.wav", "sad", "crema-d:1050", {"intensity": "low", "statement": "TIE"}),
    ("crema-d", "1002_ITS_FEA_MD.wav", "fearful", "crema-d:1002", {"intensity": "medium", "statement": "ITS"}),
    ("tess", "OAF_angry/OAF_back_angry.wav", "angry", "tess:OAF", {"gender": "female", "statement": "back"}),
    ("tess", "YAF_pleasant_surprised/YAF_dog_ps.wav", "surprised", "tess:YAF",
     {"gender": "female", "statement": "dog"}),
    ("tess", "OAF_neutral/OA_bite_neutral.wav", "neutral", "tess:OAF", {"gender": "female", "statement": "bite"}),
    ("tess", "x/YAF_thumb_up_fear.wav", "fearful", "tess:YAF", {"gender": "female", "statement": "thumb_up"}),
    ("tess", "x/yaf_germ_pleasant_surprise.wav", "surprised", "tess:YAF", {"gender": "female", "statement": "germ"}),
    ("savee", "DC_a01.wav", "angry", "savee:DC", {"gender": "male", "statement": 1}),
    ("savee", "JE_sa12.wav", "sad", "savee:JE", {"gender": "male", "statement": 12}),
    ("savee", "JK_su03.wav", "surprised", "savee:JK", {"gender": "male", "statement": 3}),
    ("savee", "KL/n30.wav", "neutral", "savee:KL", {"gender": "male", "statement": 30}),
    ("savee", "DC/sa02.wav", "sad", "savee:DC", {"gender": "male", "statement": 2}),
    ("emodb", "wav/03a01Wa.wav", "angry", "emodb:03", {"gender": "male", "statement": "a01", "repetition": "a"}),
    ("emodb", "16b10Tb.wav", "sad", "emodb:16", {"gender": "female", "statement": "b10", "repetition": "b"}),
    ("emodb", "09a05Ac.wav", "fearful", "emodb:09", {"gender": "female", "statement": "a05", "repetition": "c"}),
])
def test_parse_fields(tmp_path, corpus, name, label, speaker, meta):
    """Each convention's fields: label, corpus-prefixed speaker, gender where known, statement, level."""
    clip = parse_corpus_name(tmp_path / name, corpus)
    assert clip is not None
    assert (clip.label, clip.speaker) == (label, speaker)
    assert clip.meta == {**meta, "corpus": corpus}
    assert clip.path.is_absolute() and clip.path.name == Path(name).name


@pytest.mark.parametrize(("corpus", "template", "table"), [
    ("crema-d", "1001_DFA_{}_XX.wav", CREMA_D),
    ("tess", "OAF_back_{}.wav", TESS),
    ("savee", "DC_{}01.wav", SAVEE),
    ("emodb", "03a01{}a.wav", EMODB),
])
def test_full_label_mapping(corpus, template, table):
    """Every emotion code of each corpus maps to the expected name of EMOTIONS."""
    assert {code: parse_corpus_name(template.format(code), corpus).label for code in table} == table


@pytest.mark.parametrize(("corpus", "name"), [
    ("emodb", "03a01La.wav"),  # boredom: dropped
    ("emodb", "17a01Wa.wav"),  # no speaker 17
    ("emodb", "03a01Xa.wav"),  # no emotion X
    ("crema-d", "1000_DFA_ANG_XX.wav"),  # actors are 1001-1091
    ("crema-d", "1001_DFA_CAL_XX.wav"),
    ("crema-d", "1001_DFA_ANG_ZZ.wav"),
    ("crema-d", "1001_DFA_ANG.wav"),
    ("tess", "OAF_back.wav"),  # no word
    ("tess", "MAF_back_angry.wav"),  # unknown speaker, folder says nothing
    ("tess", "OAF_back_calm.wav"),
    ("savee", "XX_a01.wav"),
    ("savee", "a01.wav"),  # no speaker folder
    ("savee", "DC_b01.wav"),
    ("savee", "DC_a1.wav"),
    ("ravdess", "03-02-05-02-01-02-13.wav"),  # song
    ("ravdess", "1001_DFA_ANG_XX.wav"),
])
def test_parse_dropped_or_foreign_names_return_none(corpus, name):
    """Dropped labels and names outside the convention are not clips (and not errors)."""
    assert parse_corpus_name(name, corpus) is None


def test_parse_unknown_corpus():
    """An unknown corpus name is refused naming the parameter and the choices; case and -/_ are ignored."""
    with pytest.raises(ManifestError, match=r"corpus='iemocap': unknown corpus; expected one of ravdess, crema-d"):
        parse_corpus_name("a.wav", "iemocap")
    assert parse_corpus_name("1001_DFA_ANG_XX.wav", "CREMA_D").meta["corpus"] == "crema-d"
    assert parse_corpus_name("03a01Wa.wav", "EmoDB").speaker == "emodb:03"
    assert parse_corpus_name("03-01-05-02-01-02-13.wav", "RAVDESS").speaker == "13"


# --- folder indexing ----------------------------------------------------------------------------

def test_index_crema_d(crema_d, caplog):
    """18 x 2 clips; junk and impossible names counted as unrecognised and logged; no gender without demographics."""
    with caplog.at_level(logging.WARNING, logger="ser.dataset"):
        clips, dropped = index_corpus(crema_d, "crema-d")
    assert len(clips) == 36 and dropped == {UNRECOGNISED: 3}
    assert [str(c.path) for c in clips] == sorted(str(c.path) for c in clips)
    assert Counter(c.label for c in clips) == {e: 6 for e in CREMA_D.values()}
    assert Counter(c.speaker for c in clips) == {"crema-d:1001": 12, "crema-d:1012": 12, "crema-d:1091": 12}
    assert Counter(c.meta["intensity"] for c in clips) == {"low": 12, "medium": 12, "high": 6, "unspecified": 6}
    assert all(c.meta["corpus"] == "crema-d" and "gender" not in c.meta for c in clips)
    assert re.search(r"CREMA-D: dropped 3 of 39 audio files \(unrecognised file name: 3\); first unrecognised: ",
                     caplog.text)


def test_crema_d_gender_from_demographics(crema_d):
    """VideoDemographics.csv beside AudioWAV gives each actor's gender (other actors get none)."""
    (crema_d.parent / "VideoDemographics.csv").write_text(
        "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n1012,23,Female,Caucasian,Hispanic\n")
    clips, _ = index_corpus(crema_d)
    genders = {c.speaker: c.meta.get("gender") for c in clips}
    assert genders == {"crema-d:1001": "male", "crema-d:1012": "female", "crema-d:1091": None}


def test_index_tess(tess):
    """Folder names of any case/spelling; speaker and emotion from the file name; irregular names kept."""
    clips, dropped = index_corpus(tess, "tess")
    assert dropped == {UNRECOGNISED: 1}
    assert len(clips) == 2 * 7 * 2 + 4
    labels = Counter(c.label for c in clips)
    assert labels == {"angry": 4, "disgust": 4, "fearful": 5, "happy": 5, "neutral": 5, "surprised": 5, "sad": 4}
    assert Counter(c.speaker for c in clips) == {"tess:OAF": 16, "tess:YAF": 16}
    assert {c.meta["gender"] for c in clips} == {"female"}
    assert {c.meta["statement"] for c in clips} == {"back", "dog", "bite", "thumb_up", "chair", "germ"}


@pytest.mark.parametrize(("fixture", "n", "speakers"), [
    ("savee_flat", 4 * 7 * 2, {"savee:DC", "savee:JE", "savee:JK", "savee:KL"}),
    ("savee_folders", 2 * 7 * 2, {"savee:DC", "savee:KL"}),
])
def test_index_savee(request, fixture, n, speakers):
    """Flat and speaker-folder layouts; sa/su are not read as a; all speakers male."""
    clips, dropped = index_corpus(request.getfixturevalue(fixture), "savee")
    assert len(clips) == n and {c.speaker for c in clips} == speakers
    assert dropped == {UNRECOGNISED: 2 if fixture == "savee_flat" else 1}
    assert Counter(c.label for c in clips) == {e: n // 7 for e in SAVEE.values()}
    assert {c.meta["gender"] for c in clips} == {"male"}


def test_index_emodb_drops_boredom(emodb, caplog):
    """Boredom clips are dropped and counted under their name, never guessed; genders from the speaker table."""
    with caplog.at_level(logging.WARNING, logger="ser.dataset"):
        clips, dropped = index_corpus(emodb, "emodb")
    assert dropped == {"boredom": 8, UNRECOGNISED: 2}
    assert "EmoDB: dropped 10 of 58 audio files (boredom: 8, unrecognised file name: 2)" in caplog.text
    assert len(clips) == 48 and Counter(c.label for c in clips) == {e: 8 for e in EMODB.values()}
    assert {c.speaker: c.meta["gender"] for c in clips} == {
        "emodb:03": "male", "emodb:08": "female", "emodb:15": "male", "emodb:16": "female"}


def test_index_only_dropped_labels_is_an_error(tmp_path):
    """A folder whose clips are all dropped gives no clip: an error naming the folder and the drops."""
    write_all(tmp_path, ["03a01La.wav", "08a02Lb.wav"])
    with pytest.raises(ManifestError, match=re.escape(f"{tmp_path}: no EmoDB clips (expected wav/03a01Wa.wav); "
                                                      "dropped {'boredom': 2}")):
        index_corpus(tmp_path)


@pytest.mark.parametrize(("fixture", "name"), [
    ("crema_d", "crema-d"), ("tess", "tess"), ("savee_flat", "savee"), ("savee_folders", "savee"),
    ("emodb", "emodb"), ("corpus", "ravdess"),
])
def test_auto_detection(request, fixture, name):
    """corpus='auto' picks the convention most file names follow, giving the same result as naming it."""
    root = request.getfixturevalue(fixture)
    clips, dropped = index_corpus(root)
    assert {c.meta["corpus"] for c in clips} == {name}
    named = index_corpus(root, name)
    assert clips == named[0] and dropped == named[1]
    assert [c.meta for c in clips] == [c.meta for c in named[0]]


def test_auto_detection_majority_wins(emodb):
    """A few files of another corpus are outvoted and counted as unrecognised."""
    write_all(emodb, ["1001_DFA_ANG_XX.wav", "DC_a01.wav"])
    clips, dropped = index_corpus(emodb)
    assert {c.meta["corpus"] for c in clips} == {"emodb"} and dropped == {"boredom": 8, UNRECOGNISED: 4}


def test_auto_detection_failures(tmp_path):
    """No audio, no known naming, a tie, a missing folder or an unknown corpus: one-line errors naming it."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(ManifestError, match=re.escape(f"{empty}: no audio files; cannot detect the corpus")):
        index_corpus(empty)
    junk = write_all(tmp_path / "junk", ["a.wav", "b.flac", "OAF_x.wav"])
    with pytest.raises(ManifestError, match=re.escape(f"{junk}: cannot detect the corpus: none of 3 audio files "
                                                      "is named like ravdess, crema-d, tess, savee, emodb")):
        index_corpus(junk)
    tie = write_all(tmp_path / "tie", ["1001_DFA_ANG_XX.wav", "03a01Wa.wav"])
    with pytest.raises(ManifestError, match=re.escape(f"{tie}: cannot detect the corpus: 1 audio files each named "
                                                      "like crema-d and emodb")):
        index_corpus(tie)
    with pytest.raises(ManifestError, match=r"nowhere: not a folder"):
        index_corpus(tmp_path / "nowhere")
    with pytest.raises(ManifestError, match=r"corpus='msp': unknown corpus; expected auto or one of ravdess"):
        index_corpus(junk, "msp")
    with pytest.raises(ManifestError, match=r"no TESS clips \(expected OAF_angry/OAF_back_angry\.wav\)"):
        index_corpus(junk, "tess")


def test_speakers_unique_across_corpora(corpus, crema_d, tess, savee_flat, emodb):
    """RAVDESS keeps actors "1".."24"; every other speaker is prefixed with its corpus, so no two corpora share one."""
    by_corpus = {name: {c.speaker for c in index_corpus(root)[0]}
                 for name, root in [("ravdess", corpus), ("crema-d", crema_d), ("tess", tess),
                                    ("savee", savee_flat), ("emodb", emodb)]}
    assert by_corpus["ravdess"] == {"1", "4", "10", "11", "12", "20"}
    for name, speakers in by_corpus.items():
        if name != "ravdess":
            assert all(s.startswith(f"{name}:") for s in speakers), name
    assert sum(map(len, by_corpus.values())) == len(set().union(*by_corpus.values()))


# --- RAVDESS is unchanged -------------------------------------------------------------------------

def test_ravdess_indexing_unchanged(corpus):
    """index_corpus / load_dataset on a RAVDESS folder give index_ravdess's clips, plus meta corpus=ravdess."""
    old = index_ravdess(corpus)
    clips, dropped = index_corpus(corpus)
    assert dropped == {}
    assert [(c.path, c.label, c.speaker) for c in clips] == [(c.path, c.label, c.speaker) for c in old]
    assert [c.meta for c in clips] == [{**c.meta, "corpus": "ravdess"} for c in old]
    assert load_dataset(corpus) == clips == sorted(old, key=lambda c: str(c.path))


def test_ravdess_drops_and_errors(tmp_path):
    """Songs/videos and foreign names are counted apart; impossible fields still raise as in index_ravdess."""
    root = write_all(tmp_path / "r", ["Actor_01/03-01-01-01-01-01-01.wav", "Actor_01/03-02-01-01-01-01-01.wav",
                                      "Actor_01/01-01-01-01-01-01-01.wav", "Actor_01/noise.wav"])
    clips, dropped = index_corpus(root)
    assert len(clips) == 1 and dropped == {RAVDESS_NON_SPEECH: 2, UNRECOGNISED: 1}
    wav(root / "Actor_01" / "03-01-09-01-01-01-01.wav")
    with pytest.raises(ManifestError, match=r"emotion code 09 is not 01-08"):
        index_corpus(root)


# --- manifests ------------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture", ["corpus", "crema_d", "tess", "savee_folders", "emodb"])
def test_manifest_round_trip_with_corpus(request, fixture, tmp_path):
    """write_manifest keeps the corpus column; read_manifest gives back path, label, speaker and all metadata."""
    clips, _ = index_corpus(request.getfixturevalue(fixture))
    path = write_manifest(clips, tmp_path / "m.csv")
    assert path.read_text().splitlines()[0] == "path,emotion,actor,gender,intensity,statement,repetition,corpus"
    assert ",".join(MANIFEST_COLUMNS) == path.read_text().splitlines()[0]
    back = read_manifest(path)
    assert back == clips
    assert [{k: str(v) for k, v in c.meta.items()} for c in clips] == [c.meta for c in back]


def test_old_manifest_without_corpus_column(emodb, tmp_path):
    """A 7-column manifest (written before the corpus column) still reads, without meta corpus."""
    clips, _ = index_corpus(emodb)
    rows = [f"{c.path},{c.label},{c.speaker},{c.meta['gender']},,{c.meta['statement']},{c.meta['repetition']}"
            for c in clips]
    path = tmp_path / "old.csv"
    path.write_text("path,emotion,actor,gender,intensity,statement,repetition\n" + "\n".join(rows) + "\n")
    back = read_manifest(path)
    assert back == clips and all("corpus" not in c.meta for c in back)


# --- several datasets -----------------------------------------------------------------------------

def test_load_datasets_two_corpora(emodb, tess, tmp_path):
    """A folder and a manifest of another corpus are concatenated, sorted by path, speakers kept apart."""
    manifest = write_manifest(index_corpus(tess)[0], tmp_path / "tess.csv")
    clips = load_datasets([str(emodb), manifest])
    assert len(clips) == 48 + 32
    assert [str(c.path) for c in clips] == sorted(str(c.path) for c in clips)
    assert Counter(c.meta["corpus"] for c in clips) == {"emodb": 48, "tess": 32}
    assert load_datasets([emodb]) == load_datasets(emodb) == load_dataset(emodb)


def test_load_datasets_duplicates_and_empty(emodb, tmp_path):
    """The same clip from two specs is refused naming the file and both specs; no spec is refused."""
    manifest = write_manifest(index_corpus(emodb)[0][:3], tmp_path / "part.csv")
    first = sorted(index_corpus(emodb)[0], key=lambda c: str(c.path))[0].path
    with pytest.raises(ManifestError, match=re.escape(f"{manifest}:2: {first} is also in {emodb} (duplicate clip)")):
        load_datasets([emodb, manifest])
    with pytest.raises(ManifestError, match=r"no dataset given"):
        load_datasets([])


def test_load_datasets_refuses_the_same_spec_twice_and_empty_specs(emodb, tmp_path):
    """The same folder given twice (even spelled differently) and an empty path are one-line errors."""
    with pytest.raises(ManifestError, match=re.escape(f"{emodb}/: dataset given twice (as {emodb} and {emodb}/)")):
        load_datasets([emodb, f"{emodb}/"])
    with pytest.raises(ManifestError, match=r"^dataset path is empty: expected a manifest CSV or corpus folder$"):
        load_datasets([emodb, ""])


# --- symbolic links -------------------------------------------------------------------------------

def test_index_reports_symlink_loops_broken_links_and_linked_folders(emodb, tmp_path, caplog):
    """Links that cannot be indexed are counted in dropped and logged with the first path, never skipped silently."""
    (emodb / "03a02Wa.wav").symlink_to(emodb / "03a02Wa.wav")  # a loop named like a clip
    (emodb / "more").symlink_to(emodb / "more")  # a folder-like loop
    (emodb / "08a02Wa.wav").symlink_to(tmp_path / "gone.wav")  # dangling
    other = write_all(tmp_path / "other", ["16a05Fa.wav"])
    (emodb / "extra").symlink_to(other, target_is_directory=True)  # not followed
    (emodb / "08a05Fa.wav").symlink_to(other / "16a05Fa.wav")  # a link to a file is indexed (resolved)
    with caplog.at_level(logging.WARNING, logger="ser.dataset"):
        clips, dropped = index_corpus(emodb)
    assert dropped == {"boredom": 8, UNRECOGNISED: 2, SYMLINK_LOOP: 2, BROKEN_LINK: 1, LINKED_FOLDER: 1}
    assert len(clips) == 49 and (other / "16a05Fa.wav").resolve() in {c.path for c in clips}
    assert f"{emodb}: skipped 4 symbolic links (broken symbolic link: 1, symbolic link loop: 2, " \
           f"symbolic link to a folder (not followed): 1); first: {emodb / '03a02Wa.wav'}" in caplog.text
    with caplog.at_level(logging.WARNING, logger="ser.dataset"):
        assert len(index_ravdess(write_all(tmp_path / "r", ["Actor_01/03-01-01-01-01-01-01.wav"]))) == 1
        (tmp_path / "r" / "Actor_01" / "03-01-02-01-01-01-01.wav").symlink_to("03-01-02-01-01-01-01.wav")
        assert len(index_ravdess(tmp_path / "r")) == 1
    assert "r: skipped 1 symbolic links (symbolic link loop: 1)" in caplog.text


def test_index_only_links_is_an_error_naming_them(tmp_path):
    """A folder whose audio entries are all loops: the no-audio error counts the skipped links."""
    root = tmp_path / "c"
    root.mkdir()
    (root / "03a01Wa.wav").symlink_to(root / "03a01Wa.wav")
    with pytest.raises(ManifestError, match=re.escape(f"{root}: no audio files; cannot detect the corpus "
                                                      "(skipped symbolic link loop: 1)")):
        index_corpus(root)


def test_index_refuses_one_file_reached_twice(emodb):
    """A link to a clip of the same corpus folder makes one file two clips: refused naming both names."""
    (emodb / "copy").mkdir()
    (emodb / "copy" / "03a01Wa.wav").symlink_to(emodb / "03a01Wa.wav")
    with pytest.raises(ManifestError, match=re.escape(f"{emodb}: {emodb / '03a01Wa.wav'} and "
                                                      f"{emodb / 'copy' / '03a01Wa.wav'} are the same audio file")):
        index_corpus(emodb)


# --- EMOVO, ASED, TurEV-DB: read from the file names, checked against each corpus's labels.csv ------------

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
EMOVO = {"neu": "neutral", "gio": "happy", "tri": "sad", "rab": "angry", "pau": "fearful", "dis": "disgust",
         "sor": "surprised"}
ASED = {"n": "neutral", "f": "fearful", "h": "happy", "s": "sad", "a": "angry"}
TUREV = {"kz": "angry", "sk": "calm", "mt": "happy", "hl": "sad"}


@pytest.mark.parametrize(("corpus", "name", "label", "speaker", "meta"), [
    ("emovo", "m2/rab-m2-l3.ogg", "angry", "emovo:m2", {"gender": "male", "statement": "l3"}),
    ("emovo", "f1/neu-f1-d2.wav", "neutral", "emovo:f1", {"gender": "female", "statement": "d2"}),
    ("ased", "02Fearful/f2-03-02-02-65.ogg", "fearful", "ased:65", {"gender": "male", "statement": 3,
                                                                    "repetition": 2}),
    ("ased", "04Sad/S4-04-02-01-29.ogg", "sad", "ased:29", {"gender": "female", "statement": 4, "repetition": 2}),
    ("turev", "Calm/1358_sk_beste.ogg", "calm", "turev:1358", {"statement": "beste"}),
    ("turev", "1157_KZ_acik.wav", "angry", "turev:1157", {"statement": "acik"}),
])
def test_parse_new_corpora(tmp_path, corpus, name, label, speaker, meta):
    """EMOVO, ASED and TurEV-DB names: label, corpus-prefixed speaker, the other fields."""
    clip = parse_corpus_name(tmp_path / name, corpus)
    assert (clip.label, clip.speaker) == (label, speaker)
    assert clip.meta == {**meta, "corpus": corpus}


@pytest.mark.parametrize(("corpus", "template", "table"), [
    ("emovo", "{}-m1-b1.wav", EMOVO),
    ("ased", "{}-01-01-01-01.wav", {f"{k}{'nfhsa'.index(k) + 1}": v for k, v in ASED.items()}),
    ("turev", "1234_{}_acik.wav", TUREV),
])
def test_new_corpora_label_mapping(corpus, template, table):
    """Every emotion code of EMOVO, ASED and TurEV-DB maps to its name; the label maps say the same."""
    assert {code: parse_corpus_name(template.format(code), corpus).label for code in table} == table
    assert CORPUS_LABELS == {**CORPUS_LABELS, "emovo": EMOVO, "ased": ASED, "turev": TUREV}


@pytest.mark.parametrize(("corpus", "name"), [
    ("emovo", "xyz-m1-b1.wav"),  # no such emotion
    ("emovo", "rab-m4-b1.wav"),  # actors are f1-f3, m1-m3
    ("emovo", "rab-m1-x1.wav"),
    ("ased", "n2-01-01-01-01.wav"),  # the digit must be the letter's (n1 f2 h3 s4 a5)
    ("ased", "n1-01-01-03-01.wav"),  # gender 01 or 02
    ("ased", "n1-01-01-01-66.wav"),  # speakers 01-65
    ("ased", "x1-01-01-01-01.wav"),
    ("turev", "1234_zz_acik.wav"),
    ("turev", "123_sk_acik.wav"),
    ("turev", "1234_sk.wav"),
])
def test_new_corpora_foreign_names(corpus, name):
    """Names outside EMOVO's, ASED's or TurEV-DB's convention are not clips."""
    assert parse_corpus_name(name, corpus) is None


@pytest.mark.parametrize("corpus", ["emovo", "ased", "turev"])
def test_new_corpora_match_their_labels_csv(corpus):
    """The shared copies: auto-detected, nothing dropped, every clip's label and speaker as labels.csv says.

    Names only (no audio is decoded), so this runs in well under a second per corpus.
    """
    import csv

    root = SHARED_DATA / corpus
    if not (root / "labels.csv").is_file():
        pytest.skip(f"shared {corpus} copy not found at {root}")
    clips, dropped = index_corpus(root)
    assert dropped == {}
    with open(root / "labels.csv", newline="", encoding="utf-8") as f:
        expected = {row["path"]: (row["emotion"], f"{corpus}:{row['speaker']}") for row in csv.DictReader(f)}
    assert {c.path.relative_to(root.resolve()).as_posix(): (c.label, c.speaker) for c in clips} == expected
    assert {c.meta["corpus"] for c in clips} == {corpus}
    n_speakers = {"emovo": 6, "ased": 65, "turev": 6}[corpus]
    assert len({c.speaker for c in clips}) == n_speakers


def test_new_corpora_auto_detection(tmp_path):
    """Synthetic folders of each new corpus are detected as it, and their speakers stay distinct."""
    folders = {"emovo": ["m1/rab-m1-b1.wav", "f2/gio-f2-n3.wav"],
               "ased": ["01Neutral/n1-01-01-01-01.wav", "05Angry/a5-02-01-02-40.wav"],
               "turev": ["Calm/1358_sk_beste.wav", "Sad/7895_hl_acik.wav"]}
    speakers = set()
    for corpus, names in folders.items():
        clips, dropped = index_corpus(write_all(tmp_path / corpus, names))
        assert {c.meta["corpus"] for c in clips} == {corpus} and dropped == {}
        speakers |= {c.speaker for c in clips}
    assert speakers == {"emovo:m1", "emovo:f2", "ased:01", "ased:40", "turev:1358", "turev:7895"}
