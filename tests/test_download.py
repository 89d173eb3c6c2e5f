"""Tests for ser.download against a local HTTP server on 127.0.0.1 (no internet)."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from ser.download import download_file, download_ravdess, extract_zip
from ser.errors import DownloadError, SERError

ARCHIVE_NAME = "Audio_Speech_Actors_01-24.zip"


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def fake_ravdess(prefix: str = "") -> bytes:
    """A tiny archive with the official layout: Actor_XX/03-01-...wav."""
    members = {}
    for actor in (1, 2):
        for emotion in (1, 5):
            name = f"{prefix}Actor_{actor:02d}/03-01-{emotion:02d}-01-01-01-{actor:02d}.wav"
            members[name] = f"RIFF fake audio {actor} {emotion}".encode() * 50
    return make_zip(members)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class FakeServer:
    """State shared with the request handler, and what the tests inspect."""

    def __init__(self, httpd: ThreadingHTTPServer) -> None:
        self.httpd = httpd
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.drop_after: int | None = None  # next response closes after this many body bytes
        self.ignore_range = False

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        state: FakeServer = self.server.state  # type: ignore[attr-defined]
        path = urlsplit(self.path).path
        range_header = self.headers.get("Range")
        state.requests.append((path, range_header))

        body = state.files.get(path)
        if body is None:
            self.send_error(404)
            return

        start = 0
        if range_header and not state.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        # The full length is announced even when we then drop the connection.
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()

        if state.drop_after is not None:
            payload = payload[: state.drop_after]
            state.drop_after = None  # drop only once
            self.close_connection = True
        self.wfile.write(payload)

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state = FakeServer(httpd)
    httpd.state = state  # type: ignore[attr-defined]
    # A short poll interval keeps shutdown() (and so each test) fast.
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def archive(server: FakeServer) -> bytes:
    data = fake_ravdess()
    server.files["/" + ARCHIVE_NAME] = data
    return data


def archive_url(server: FakeServer) -> str:
    return server.url(f"/{ARCHIVE_NAME}?download=1")


# --------------------------------------------------------------------------- download_ravdess


def test_download_ravdess_layout(server, archive, tmp_path):
    dest = tmp_path / "data" / "ravdess"
    out = download_ravdess(dest, url=archive_url(server), md5=md5(archive), progress=False)

    assert out == dest
    assert sorted(p.name for p in dest.iterdir()) == ["Actor_01", "Actor_02"]
    assert sorted(p.name for p in (dest / "Actor_01").iterdir()) == [
        "03-01-01-01-01-01-01.wav",
        "03-01-05-01-01-01-01.wav",
    ]
    assert (dest / "Actor_02" / "03-01-05-01-01-01-02.wav").read_bytes().startswith(b"RIFF")


def test_download_ravdess_with_progress_bar(server, archive, tmp_path, capsys):
    download_ravdess(tmp_path, url=archive_url(server), md5=md5(archive), progress=True)
    assert (tmp_path / "Actor_01").is_dir()
    assert ARCHIVE_NAME in capsys.readouterr().err  # tqdm writes to stderr


def test_download_ravdess_skips_complete_dataset(server, archive, tmp_path):
    for i in range(1, 25):
        (tmp_path / f"Actor_{i:02d}").mkdir()
    download_ravdess(tmp_path, url=archive_url(server), md5=md5(archive), progress=False)
    assert server.requests == []


def test_download_ravdess_bad_checksum_leaves_nothing(server, archive, tmp_path):
    with pytest.raises(DownloadError, match="checksum"):
        download_ravdess(tmp_path, url=archive_url(server), md5="0" * 32, progress=False)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- download_file


def test_download_file_verifies_md5(server, archive, tmp_path):
    target = tmp_path / "a.zip"
    out = download_file(archive_url(server), target, md5=md5(archive).upper(), progress=False)
    assert out == target
    assert target.read_bytes() == archive
    assert not (tmp_path / "a.zip.part").exists()


def test_download_file_checksum_mismatch(server, archive, tmp_path):
    target = tmp_path / "a.zip"
    with pytest.raises(DownloadError, match="checksum mismatch") as info:
        download_file(archive_url(server), target, md5="0" * 32, progress=False)
    assert archive_url(server) in str(info.value)
    assert isinstance(info.value, SERError) and isinstance(info.value, OSError)
    assert not target.exists()
    assert not (tmp_path / "a.zip.part").exists()


def test_download_file_resumes_after_dropped_connection(server, archive, tmp_path):
    target = tmp_path / "a.zip"
    part = tmp_path / "a.zip.part"
    k = len(archive) // 3
    server.drop_after = k

    with pytest.raises(DownloadError, match="resume"):
        download_file(archive_url(server), target, md5=md5(archive), progress=False)
    assert not target.exists()
    assert part.read_bytes() == archive[:k]

    download_file(archive_url(server), target, md5=md5(archive), progress=False)
    assert server.requests[-1] == ("/" + ARCHIVE_NAME, f"bytes={k}-")
    assert target.read_bytes() == archive
    assert not part.exists()


def test_download_file_server_ignoring_range(server, archive, tmp_path):
    target = tmp_path / "a.zip"
    part = tmp_path / "a.zip.part"
    part.write_bytes(b"garbage that must be thrown away")
    server.ignore_range = True

    download_file(archive_url(server), target, md5=md5(archive), progress=False)
    assert server.requests[-1][1] == f"bytes={len(b'garbage that must be thrown away')}-"
    assert target.read_bytes() == archive
    assert not part.exists()


def test_download_file_oversized_part_starts_over(server, archive, tmp_path):
    # A .part at least as long as the file gets 416 on resume: start from scratch.
    target = tmp_path / "a.zip"
    (tmp_path / "a.zip.part").write_bytes(b"x" * (len(archive) + 10))
    download_file(archive_url(server), target, md5=md5(archive), progress=False)
    assert [r[1] for r in server.requests] == [f"bytes={len(archive) + 10}-", None]
    assert target.read_bytes() == archive


def test_download_file_already_downloaded(server, archive, tmp_path):
    target = tmp_path / "a.zip"
    download_file(archive_url(server), target, md5=md5(archive), progress=False)
    assert len(server.requests) == 1
    download_file(archive_url(server), target, md5=md5(archive), progress=False)
    assert len(server.requests) == 1


def test_download_file_replaces_corrupt_existing_file(server, archive, tmp_path):
    target = tmp_path / "a.zip"
    target.write_bytes(b"corrupt")
    download_file(archive_url(server), target, md5=md5(archive), progress=False)
    assert len(server.requests) == 1
    assert target.read_bytes() == archive


def test_download_file_http_404(server, tmp_path):
    url = server.url("/missing.zip")
    with pytest.raises(DownloadError, match="404") as info:
        download_file(url, tmp_path / "m.zip", progress=False)
    assert url in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_download_file_connection_refused(tmp_path):
    with socket.socket() as sock:  # grab a free port, then close it so nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError, match="connection failed"):
        download_file(
            f"http://127.0.0.1:{port}/x.zip", tmp_path / "x.zip", progress=False, timeout=2
        )


# --------------------------------------------------------------------------- extract_zip


def test_extract_zip_nested_top_folder(tmp_path):
    archive = tmp_path / "nested.zip"
    archive.write_bytes(fake_ravdess(prefix="Audio_Speech_Actors_01-24/"))
    dest = tmp_path / "out"
    assert extract_zip(archive, dest) == dest
    assert sorted(p.name for p in dest.iterdir()) == ["Actor_01", "Actor_02"]
    assert len(list((dest / "Actor_02").iterdir())) == 2


def test_extract_zip_replaces_existing_actor_folder(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(fake_ravdess())
    dest = tmp_path / "out"
    (dest / "Actor_01").mkdir(parents=True)
    (dest / "Actor_01" / "stale.wav").write_bytes(b"old")
    extract_zip(archive, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["Actor_01", "Actor_02"]
    assert not (dest / "Actor_01" / "stale.wav").exists()


@pytest.mark.parametrize(
    "evil", ["../evil.wav", "Actor_01/../../evil.wav", "/tmp/evil.wav", "C:\\evil.wav"]
)
def test_extract_zip_rejects_zip_slip(tmp_path, evil):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(make_zip({"Actor_01/ok.wav": b"ok", evil: b"pwned"}))
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(DownloadError, match="unsafe"):
        extract_zip(archive, dest)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil.wav").exists()


def test_extract_zip_not_a_zip(tmp_path):
    archive = tmp_path / "fake.zip"
    archive.write_bytes(b"<html>this is an error page, not a zip</html>")
    dest = tmp_path / "out"
    with pytest.raises(DownloadError, match="not a zip") as info:
        extract_zip(archive, dest)
    assert str(archive) in str(info.value)
    assert not dest.exists() or list(dest.iterdir()) == []


def test_extract_zip_without_actor_folders(tmp_path):
    archive = tmp_path / "other.zip"
    archive.write_bytes(make_zip({"README.txt": b"hi", "misc/a.wav": b"x"}))
    dest = tmp_path / "out"
    with pytest.raises(DownloadError, match="no Actor_"):
        extract_zip(archive, dest)
    assert list(dest.iterdir()) == []


def test_extract_zip_corrupt_member_leaves_nothing(tmp_path):
    members = {"Actor_01/a.wav": b"A" * 1000, "Actor_02/b.wav": b"B" * 1000}
    data = bytearray(make_zip(members))
    # Flip bytes inside Actor_02's compressed data so its CRC check fails mid-extraction.
    offset = data.index(b"Actor_02/b.wav") + len("Actor_02/b.wav")
    data[offset + 2 : offset + 6] = b"\xff\xff\xff\xff"
    archive = tmp_path / "corrupt.zip"
    archive.write_bytes(bytes(data))
    dest = tmp_path / "out"
    with pytest.raises(DownloadError, match="extraction failed"):
        extract_zip(archive, dest)
    assert list(dest.iterdir()) == []
