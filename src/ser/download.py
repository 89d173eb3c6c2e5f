"""Download and unpack the RAVDESS speech corpus.

The library side of ``ser data download DIR``: fetch the official archive from
Zenodo (record 1188976), verify its size and MD5, and extract the
``Actor_01`` ... ``Actor_24`` folders into ``DIR``.

Robustness rules:

* the download goes to ``<file>.part`` and is renamed to ``<file>`` only once
  it is complete and verified, so a finished file is always a good file;
* a dropped connection keeps the ``.part`` and the next call resumes it with an
  HTTP ``Range`` request; a checksum mismatch deletes it so the next call
  starts clean;
* extraction happens in a scratch folder inside the destination and each actor
  folder is moved into place with a single rename, so an interrupted or failed
  extraction never leaves a half-filled actor folder behind.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.parse import urlsplit

from tqdm import tqdm

from ser.errors import DownloadError

__all__ = [
    "RAVDESS_MD5",
    "RAVDESS_URL",
    "download_file",
    "download_ravdess",
    "extract_zip",
]

logger = logging.getLogger(__name__)

RAVDESS_URL: str = (
    "https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip?download=1"
)
RAVDESS_MD5: str = "bc696df654c87fed845eb13823edef8a"

#: Number of actors in the official corpus (``Actor_01`` ... ``Actor_24``).
RAVDESS_N_ACTORS = 24

_ACTOR_DIR = re.compile(r"Actor_\d+")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_USER_AGENT = "ser (RAVDESS downloader; Python urllib)"


def download_ravdess(
    dest: str | os.PathLike,
    *,
    url: str = RAVDESS_URL,
    md5: str | None = RAVDESS_MD5,
    progress: bool = True,
    timeout: float = 60.0,
    chunk_size: int = 1 << 20,
) -> Path:
    """Download and extract; return the folder holding Actor_01..Actor_24 (i.e. `dest`).

    The archive is downloaded into ``dest`` (resuming an earlier broken
    attempt), verified, extracted, and then deleted since only the extracted
    WAV files are used. Calling it again once ``dest`` holds all 24 actor
    folders does nothing.

    Parameters
    ----------
    dest : str or os.PathLike
        Destination folder; created if missing.
    url : str, optional
        Where to fetch the archive (default: the official Zenodo file).
    md5 : str or None, optional
        Expected MD5 of the archive; ``None`` skips the checksum.
    progress : bool, optional
        Show a progress bar on stderr.
    timeout : float, optional
        Socket timeout in seconds for connecting and for each read.
    chunk_size : int, optional
        Bytes read from the network at a time.

    Returns
    -------
    pathlib.Path
        ``dest``, which now holds the ``Actor_*`` folders.

    Raises
    ------
    DownloadError
        On a network, HTTP, size, checksum or archive problem.
    """
    dest = Path(dest)
    if _has_all_actors(dest):
        logger.info("%s already holds all %d actor folders; nothing to do", dest, RAVDESS_N_ACTORS)
        return dest

    archive = dest / _archive_name(url)
    download_file(url, archive, md5=md5, progress=progress, timeout=timeout, chunk_size=chunk_size)
    extract_zip(archive, dest)
    # Keep the archive if extraction failed (above raised) so a rerun does not
    # fetch 200 MB again; once extracted it is dead weight.
    archive.unlink()
    logger.info("RAVDESS extracted into %s", dest)
    return dest


def download_file(
    url: str,
    path: str | os.PathLike,
    *,
    md5: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    chunk_size: int = 1 << 20,
) -> Path:
    """Download `url` to `path` safely, resuming a broken earlier attempt.

    Data goes to ``path + '.part'``. When that file already exists the
    download resumes with an HTTP ``Range`` request; if the server answers
    200 instead of 206 it starts again from scratch. The received size is
    checked against the size announced by the server (``Content-Length`` /
    ``Content-Range``) and the MD5 against `md5`; only then is the ``.part``
    atomically renamed to `path`. If `path` already exists and its MD5
    matches (or `md5` is ``None``), nothing is downloaded.

    Parameters
    ----------
    url : str
        URL to fetch.
    path : str or os.PathLike
        Final file; its parent folder is created if missing.
    md5 : str or None, optional
        Expected hex MD5 of the whole file; ``None`` skips the checksum.
    progress : bool, optional
        Show a progress bar on stderr.
    timeout : float, optional
        Socket timeout in seconds for connecting and for each read.
    chunk_size : int, optional
        Bytes read from the network at a time.

    Returns
    -------
    pathlib.Path
        `path`.

    Raises
    ------
    DownloadError
        HTTP error status, connection failure, connection lost (the ``.part``
        is kept for resuming), size mismatch, or checksum mismatch (the
        ``.part`` is deleted).
    """
    path = Path(path)
    part = path.with_name(path.name + ".part")
    expected = md5.lower() if md5 is not None else None

    if path.exists():
        if expected is None:
            logger.info("%s already exists; not downloading again", path)
            return path
        actual = _md5sum(path)
        if actual == expected:
            logger.info("%s already downloaded and verified", path)
            return path
        logger.warning("%s: md5 %s, expected %s; downloading again", path, actual, expected)

    path.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.exists() else 0
    response, offset, total = _open(url, offset, timeout)
    with response:
        received = _receive(response, url, part, offset, total, progress, chunk_size, path.name)

    if total is not None and received != total:
        # Keep the .part: the bytes we have are good, the next call resumes.
        raise DownloadError(
            f"{url}: incomplete download ({received} of {total} bytes); run again to resume"
        )
    if expected is not None:
        actual = _md5sum(part)
        if actual != expected:
            # Corrupt data cannot be resumed from; make the next attempt start clean.
            part.unlink()
            raise DownloadError(f"{url}: checksum mismatch (md5 {actual}, expected {expected})")
    os.replace(part, path)
    logger.info("downloaded %s (%d bytes)", path, received)
    return path


def extract_zip(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract the ``Actor_*`` folders of a RAVDESS zip into `dest`, all or nothing.

    Members are first checked for absolute paths and ``..`` components
    (zip-slip). The archive is then extracted into a temporary folder inside
    `dest` (``dest/.extract-XXXX``, same file system, so moves are renames)
    and each ``Actor_*`` folder is moved into `dest` with :func:`os.replace`,
    replacing an existing folder of the same name. The ``Actor_*`` folders may
    sit at the top of the archive (official layout) or inside a single
    top-level folder (some mirrors). The temporary folder is always removed,
    so a failure leaves no partial folder behind.

    Parameters
    ----------
    archive : str or os.PathLike
        The zip file.
    dest : str or os.PathLike
        Destination folder; created if missing.

    Returns
    -------
    pathlib.Path
        `dest`.

    Raises
    ------
    DownloadError
        If the file is missing or not a zip, has an unsafe member path, has no
        ``Actor_*`` folder, or cannot be extracted (corrupt member, disk full...).
    """
    archive = Path(archive)
    dest = Path(dest)
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{archive}: not a zip archive") from exc
    except OSError as exc:
        raise DownloadError(f"{archive}: cannot open archive: {exc.strerror or exc}") from exc

    with zf:
        for name in zf.namelist():
            _check_member(archive, name)
        dest.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
        try:
            zf.extractall(scratch)
            root = _find_actor_root(scratch)
            if root is None:
                raise DownloadError(f"{archive}: no Actor_* folders found in archive")
            actors = sorted(p for p in root.iterdir() if _is_actor_dir(p))
            for actor in actors:
                _replace_dir(actor, dest / actor.name, scratch)
        except DownloadError:
            raise
        except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise DownloadError(f"{archive}: extraction failed: {exc}") from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    logger.info("extracted %d actor folders from %s into %s", len(actors), archive, dest)
    return dest


# --------------------------------------------------------------------------- helpers


def _open(
    url: str, offset: int, timeout: float
) -> tuple[http.client.HTTPResponse, int, int | None]:
    """Send the GET (with ``Range`` when resuming at `offset`).

    Returns the response, the offset the body starts at (0 when the server
    sent the whole file) and the total file size (``None`` if unknown).
    """
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        logger.info("resuming %s at byte %d", url, offset)
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            # The .part is not shorter than the file, so it is not a prefix we
            # can trust (the checksum would have renamed or deleted a good one).
            logger.warning("%s: server refused to resume at byte %d; starting over", url, offset)
            return _open(url, 0, timeout)
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise DownloadError(f"{url}: connection failed: {reason}") from exc

    length = response.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch((response.headers.get("Content-Range") or "").strip())
        if match is None or int(match.group(1)) != offset:
            response.close()
            logger.warning("%s: unexpected partial answer to Range request; starting over", url)
            return _open(url, 0, timeout)
        if match.group(3) != "*":
            total = int(match.group(3))
        else:
            total = offset + length if length is not None else None
        return response, offset, total

    if offset:
        logger.warning("%s: server does not support resuming; downloading from the start", url)
    return response, 0, length


def _receive(
    response: http.client.HTTPResponse,
    url: str,
    part: Path,
    offset: int,
    total: int | None,
    progress: bool,
    chunk_size: int,
    label: str,
) -> int:
    """Stream the body into `part` (appending from `offset`); return its final size."""
    received = offset
    with open(part, "ab" if offset else "wb") as fh, tqdm(
        total=total,
        initial=offset,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=label,
        disable=not progress,
    ) as bar:
        while True:
            try:
                chunk = response.read(chunk_size)
            except (OSError, http.client.HTTPException) as exc:
                # What was written is a valid prefix: keep it for resuming.
                raise DownloadError(
                    f"{url}: connection lost after {received} bytes ({exc}); run again to resume"
                ) from exc
            if not chunk:
                break
            fh.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    return received


def _md5sum(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex MD5 of a file's content."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_member(archive: Path, name: str) -> None:
    """Reject a member that would land outside the extraction folder (zip-slip)."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts or PureWindowsPath(name).drive:
        raise DownloadError(f"{archive}: unsafe member path {name!r} in archive")


def _find_actor_root(folder: Path) -> Path | None:
    """The folder holding the ``Actor_*`` folders: `folder` itself or its single subfolder."""
    if _contains_actors(folder):
        return folder
    # Ignore macOS resource forks and hidden folders some mirrors add.
    subdirs = [
        p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(("__MACOSX", "."))
    ]
    if len(subdirs) == 1 and _contains_actors(subdirs[0]):
        return subdirs[0]
    return None


def _is_actor_dir(path: Path) -> bool:
    return path.is_dir() and _ACTOR_DIR.fullmatch(path.name) is not None


def _contains_actors(folder: Path) -> bool:
    return any(_is_actor_dir(p) for p in folder.iterdir())


def _replace_dir(src: Path, target: Path, scratch: Path) -> None:
    """Move `src` to `target` in one rename, replacing whatever `target` was."""
    aside = None
    if target.exists() or target.is_symlink():
        # os.replace cannot overwrite a non-empty folder: park the old one in
        # the scratch folder (deleted afterwards) so the swap is two renames.
        aside = scratch / f"old-{target.name}"
        os.replace(target, aside)
        logger.info("replacing existing %s", target)
    try:
        os.replace(src, target)
    except OSError:
        if aside is not None:
            os.replace(aside, target)
        raise


def _has_all_actors(dest: Path) -> bool:
    return all((dest / f"Actor_{i:02d}").is_dir() for i in range(1, RAVDESS_N_ACTORS + 1))


def _archive_name(url: str) -> str:
    """File name for the downloaded archive, taken from the URL path."""
    name = PurePosixPath(urlsplit(url).path).name
    return name if name not in ("", ".", "..") else "ravdess.zip"
