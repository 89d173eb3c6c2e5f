"""``ser serve`` over real HTTP and WebSockets on loopback: a ``ser serve`` process per fixture.

Results are checked against the library (``Recognizer.predict_file``, ``timeline.timeline``) on the
same files; every error has its status and a one-line JSON body.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
ws_client = pytest.importorskip("websockets.sync.client")

from serve_support import Server, clips, conversation

from ser.cli import main
from ser.inference import Recognizer
from ser.speakers import enrol
from ser.timeline import timeline

TOKEN = "s3cret-token-for-tests"
FIELDS = {"source", "label", "confidence", "duration", "scores"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server("--model", "fast", "--model", "default", "--max-upload-mb", "1", "--max-timeline-s", "60",
               "--max-streams", "2", "--max-files", "20", tmp=tmp_path_factory.mktemp("serve"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A server with a token (from $SER_TOKEN) and a queue of one request: 401s and 503s."""
    s = Server("--model", "fast", "--max-queue", "1", "--cors", "http://app.example",
               tmp=tmp_path_factory.mktemp("guarded"), env={"SER_TOKEN": TOKEN})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def recognizers():
    return {"fast": Recognizer.load("fast"), "default": Recognizer.load("default")}


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """The bad-input matrix and a short conversation, as files."""
    d = tmp_path_factory.mktemp("audio")
    import soxr

    sr = 16000
    rng = np.random.default_rng(0)
    voice, rate = sf.read(clips(1)[0], dtype="float32")  # real speech: prediction refuses pure tones
    assert rate == sr
    (d / "empty.wav").write_bytes(b"")
    sf.write(d / "whole.wav", voice, sr, subtype="PCM_16")
    data = (d / "whole.wav").read_bytes()
    (d / "truncated.wav").write_bytes(data[: len(data) // 3])
    (d / "random.wav").write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (d / "notes.txt").write_text("this is not audio\n" * 20)
    sf.write(d / "silent.wav", np.zeros(sr, dtype=np.float32), sr, subtype="PCM_16")
    sf.write(d / "short.wav", voice[sr:sr + 800], sr, subtype="PCM_16")  # 0.05 s
    # 61 s (over the 60 s clip limit) at 8 kHz, to stay under the 1 MB upload limit.
    sf.write(d / "long.flac", np.tile(soxr.resample(voice, sr, 8000), 17)[: 61 * 8000], 8000)
    two = voice[: 2 * sr]
    sf.write(d / "channels.wav", np.stack([two * (k + 1) / 9 for k in range(8)], axis=1), sr, subtype="PCM_16")
    nan = voice.copy()
    nan[100:200] = np.nan
    sf.write(d / "nan.wav", nan, sr, subtype="FLOAT")
    conversation(d / "conversation.wav", clips(3))
    return d


def post(url, files=None, *, params=None, headers=None, timeout=60.0, **kwargs):
    upload = None
    if files is not None:
        upload = [("file", (f.name, f.read_bytes())) for f in files]
    return httpx.post(url, files=upload, params=params, headers=headers, timeout=timeout, **kwargs)


def check_error(r, status: int, match: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body["error"], str) and isinstance(body["detail"], str), body
    assert "\n" not in body["detail"] and "Traceback" not in r.text
    if match is not None:
        assert match in body["detail"], body
    return body


# --- health, models, page ------------------------------------------------------------------------
def test_health_models_page_and_docs(server):
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["models"] == ["fast", "default"] and health["auth"] is False
    models = httpx.get(server.url + "/v1/models").json()
    assert models["default"] == "fast" and models["loaded"] == ["fast", "default"]
    by_name = {m["name"]: m for m in models["models"]}
    assert by_name["default"]["adapted_head"] is True and by_name["fast"]["adapted_head"] is False
    assert by_name["default"]["classes"][0] == "neutral" and len(by_name["fast"]["classes"]) == 8
    assert 0.5 < by_name["default"]["si6"]["uar"] < 1
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "Record" in page.text and "Enrol my voice" in page.text
    for text in [page.text] + [httpx.get(f"{server.url}/static/{a}").text for a in ("app.js", "style.css",
                                                                                    "pcm-worklet.js", "docs.html")]:
        assert not re.search(r"(src|href|url)\s*[=(]\s*[\"']?(https?:)?//", text)  # nothing from elsewhere
        assert not re.search(r"fetch\(\s*[\"'`]https?:|import .* from", text)
    assert "/v1/predict" in httpx.get(server.url + "/openapi.json").json()["paths"]
    docs = httpx.get(server.url + "/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", docs.text)  # no CDN, unlike Swagger UI's default


# --- predictions -------------------------------------------------------------------------------
def test_predict_equals_library(server, recognizers):
    files = clips(4)
    for model in ("fast", "default"):
        r = post(server.url + "/v1/predict", files, params={"model": model})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == model and body["errors"] == 0
        for f, got in zip(files, body["results"]):
            assert set(got) == FIELDS and got["source"] == f.name
            want = recognizers[model].predict_file(f).to_dict()
            assert got["label"] == want["label"] and got["duration"] == want["duration"]
            assert got["scores"] == pytest.approx(want["scores"], abs=1e-5)
    # The first loaded model answers when none is named; a raw body works like one upload.
    f = files[0]
    r = httpx.post(server.url + "/v1/predict", content=f.read_bytes(), headers={"content-type": "audio/flac"},
                   params={"filename": "mine.flac"})
    got = r.json()["results"][0]
    assert r.json()["model"] == "fast" and got["source"] == "mine.flac"
    assert got["scores"] == pytest.approx(recognizers["fast"].predict_file(f).to_dict()["scores"], abs=1e-5)


def test_bad_input_matrix(server, audio):
    url = server.url + "/v1/predict"
    expected = {"empty.wav": (422, "empty"), "truncated.wav": (422, "truncated"),
                "random.wav": (415, "not a readable audio file"), "notes.txt": (415, "not a readable audio file"),
                "silent.wav": (422, "silent"), "short.wav": (422, "shorter than"), "long.flac": (413, "longer than"),
                "nan.wav": (422, "NaN")}
    for name, (status, words) in expected.items():
        body = check_error(post(url, [audio / name]), status, words)
        assert body["detail"].startswith(name + ":"), body  # the upload's name, never a server path
        assert str(server.tmp) not in json.dumps(body)
    r = post(url, [audio / "channels.wav"])  # eight channels are mixed down
    assert r.status_code == 200 and r.json()["results"][0]["label"]
    # One bad file among good ones: 200, the failure in its place.
    r = post(url, [audio / "channels.wav", audio / "silent.wav"])
    results = r.json()["results"]
    assert r.status_code == 200 and r.json()["errors"] == 1 and "label" in results[0]
    assert results[1]["status"] == 422 and results[1]["source"] == "silent.wav"
    assert server.temporaries() == []  # uploads never outlive their request


def test_http_errors(server, audio):
    url = server.url + "/v1/predict"
    clip = clips(1)
    check_error(httpx.post(url, files=[("note", (None, b"no file"))]), 400, "no audio file")
    check_error(httpx.post(url, data={"note": "no file"}), 415, "Content-Type")
    check_error(httpx.post(url), 400)
    check_error(httpx.post(url, content=b"", headers={"content-type": "audio/wav"}), 400, "empty")
    check_error(httpx.post(url, content=b"{}", headers={"content-type": "application/json"}), 415, "Content-Type")
    check_error(post(url, clip, params={"model": "nope"}), 404, "not loaded")
    check_error(post(url, clip, params={"adapt": "maybe"}), 400, "adapt")
    check_error(post(url, clip, params={"adapt": "true"}), 400, "adapted head")  # fast has none
    check_error(post(url, clip, params={"model": "default", "speaker": "nobody"}), 404, "no profile")
    check_error(post(url, clip, params={"model": "default", "speaker": "../x"}), 400, "letters")
    check_error(post(url, clip, params={"model": "default", "speaker": "a", "adapt": "true"}), 400, "not both")
    check_error(post(url, clips(1) * 21), 413, "at most 20")
    check_error(httpx.get(url), 405)
    check_error(httpx.get(server.url + "/v1/nothing"), 404, "no such endpoint")
    # Over the 1 MB upload limit: refused by Content-Length, and by counting a chunked body.
    big = b"\0" * 1_100_000
    check_error(httpx.post(url, content=big, headers={"content-type": "audio/wav"}), 413, "limit")
    check_error(httpx.post(url, content=iter([big[:600_000], big[600_000:]]), headers={"content-type": "audio/wav"}),
                413, "limit")
    # DNS rebinding: a page elsewhere reaching 127.0.0.1 under its own name is refused.
    check_error(httpx.get(server.url + "/health", headers={"host": "attacker.example"}), 400, "localhost")
    assert server.proc.poll() is None and server.temporaries() == []


def test_token_and_binding(guarded, capsys):
    url = guarded.url + "/v1/predict"
    clip = clips(1)
    r = check_error(post(url, clip), 401, "token")
    assert r and "bearer" in post(url, clip).headers["www-authenticate"].lower()
    check_error(post(url, clip, headers={"authorization": "Bearer wrong-token"}), 401)
    ok = post(url, clip, headers={"authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["model"] == "fast"
    assert httpx.get(guarded.url + "/health").json()["auth"] is True  # health and the page stay open
    # Non-loopback without a token: one line, exit 1, nothing loaded.
    assert main(["serve", "--host", "0.0.0.0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--host 0.0.0.0" in err and "token" in err
    for argv, words in ((["--port", "70000"], "--port 70000"), (["--token", "short"], "at least 8"),
                        (["--max-upload-mb", "nan"], "max_upload_mb")):
        assert main(["serve", *argv]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err


def test_cors_only_for_the_named_origin(guarded, server):
    preflight = {"access-control-request-method": "POST", "access-control-request-headers": "authorization"}
    ok = httpx.options(guarded.url + "/v1/predict", headers={"origin": "http://app.example", **preflight})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "http://app.example"
    other = httpx.options(guarded.url + "/v1/predict", headers={"origin": "http://other.example", **preflight})
    assert "access-control-allow-origin" not in other.headers
    r = post(guarded.url + "/v1/predict", clips(1), headers={"origin": "http://app.example"})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "http://app.example"
    # Without --cors, no origin is allowed.
    r = httpx.options(server.url + "/v1/predict", headers={"origin": "http://app.example", **preflight})
    assert "access-control-allow-origin" not in r.headers
    with ws_client.connect(f"{guarded.ws}/v1/stream", additional_headers={"origin": "http://app.example"}) as ws:
        ws.send(json.dumps({"type": "start", "token": TOKEN}))
        assert json.loads(ws.recv())["type"] == "ready"


def test_queue_full_gives_503_then_recovers(guarded):
    """Queue of one: a burst of 12 sixteen-file requests gets some 503s with Retry-After, the rest succeed."""
    files = clips(16)
    headers = {"authorization": f"Bearer {TOKEN}"}
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda _: post(guarded.url + "/v1/predict", files, headers=headers), range(12)))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503} and codes.count(503) >= 1 and codes.count(200) >= 2, codes
    for r in responses:
        if r.status_code == 503:
            check_error(r, 503, "waiting")
            assert int(r.headers["retry-after"]) >= 1
    assert post(guarded.url + "/v1/predict", files, headers=headers).status_code == 200


def test_concurrent_requests_equal_single(server):
    """16 requests at once (micro-batched together) give what each gives alone."""
    files = clips(16)
    single = [post(server.url + "/v1/predict", [f]).json()["results"][0] for f in files]
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda f: post(server.url + "/v1/predict", [f]), files))
    for one, many in zip(single, together):
        assert many.status_code == 200
        got = many.json()["results"][0]
        assert got["label"] == one["label"] and got["scores"] == pytest.approx(one["scores"], abs=1e-5)


def test_timeline_endpoint(server, recognizers, audio):
    path = audio / "conversation.wav"
    want = [s.to_dict() for s in timeline(path, recognizers["fast"])]
    r = post(server.url + "/v1/timeline", [path])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == "conversation.wav" and len(body["segments"]) == len(want) == 3
    for got, exp in zip(body["segments"], want):
        assert (got["start"], got["end"], got["label"]) == (exp["start"], exp["end"], exp["label"])
        assert got["scores"] == pytest.approx(exp["scores"], abs=1e-5)
    png = post(server.url + "/v1/timeline", [path], params={"format": "png"})
    assert png.headers["content-type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    csv = post(server.url + "/v1/timeline", [path], params={"format": "csv"})
    assert csv.text.splitlines()[0].startswith("start,end,label,confidence,neutral")
    check_error(post(server.url + "/v1/timeline", [audio / "notes.txt"]), 415)
    sf.write(audio / "hour.flac", np.zeros(16000 * 61, dtype=np.int16), 16000)  # over --max-timeline-s 60
    check_error(post(server.url + "/v1/timeline", [audio / "hour.flac"]), 413, "limit for a timeline")
    check_error(post(server.url + "/v1/timeline", [path, path]), 413, "at most 1")
    assert server.temporaries() == []


def test_speakers_enrol_predict_list_remove(server, recognizers):
    files = clips(4)
    url = server.url + "/v1/speakers"
    check_error(httpx.put(url + "/alice", files=[("file", (files[0].name, files[0].read_bytes()))],
                          params={"model": "fast"}), 400, "adapted head")
    r = httpx.put(url + "/alice", files=[("file", (f.name, f.read_bytes())) for f in files[:3]],
                  params={"model": "default"}, timeout=60)
    assert r.status_code == 201, r.text
    assert r.json()["clips"] == 3 and r.json()["replaced"] is False
    assert [s["name"] for s in httpx.get(url).json()["speakers"]] == ["alice"]
    assert "path" not in httpx.get(url).json()["speakers"][0]
    got = post(server.url + "/v1/predict", [files[3]], params={"model": "default", "speaker": "alice"}).json()
    profile = enrol(recognizers["default"], "alice", files[:3], save=False)
    want = recognizers["default"].predict_file(files[3], speaker=profile).to_dict()
    assert got["results"][0]["scores"] == pytest.approx(want["scores"], abs=1e-4)
    # Unlabelled adaptation over the uploaded batch = groups with one group for all.
    got = post(server.url + "/v1/predict", files[:3], params={"model": "default", "adapt": "true"}).json()
    want = recognizers["default"].predict_files(files[:3], groups=["g"] * 3)
    for g, w in zip(got["results"], want):
        assert g["scores"] == pytest.approx(w.to_dict()["scores"], abs=1e-4)
    for bad in ("..%2Fx", "%2E%2E", "a%00b", "-x", "x" * 65):
        check_error(httpx.put(f"{url}/{bad}", files=[("file", ("a.flac", files[0].read_bytes()))]), 400, "letters")
        check_error(httpx.delete(f"{url}/{bad}"), 400, "letters")
    assert httpx.delete(url + "/alice").json() == {"removed": "alice"}
    check_error(httpx.delete(url + "/alice"), 404, "no profile")
    assert httpx.get(url).json()["speakers"] == []


# --- live stream ---------------------------------------------------------------------------------
def receive_all(ws) -> list[dict]:
    """Every event until the server closes (whatever the close code)."""
    from websockets.exceptions import ConnectionClosed

    events = []
    try:
        while True:
            events.append(json.loads(ws.recv()))
    except ConnectionClosed:
        return events


def stream(server, path, *, rate=16000, frame_s=0.1, start=None, model="fast", token=None):
    """Send a file as PCM16 frames; returns (events, close code)."""
    y, sr = sf.read(path, dtype="float32")
    if rate != sr:
        import soxr

        y = soxr.resample(y, sr, rate)
    pcm = (np.clip(y, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()
    events = []
    with ws_client.connect(f"{server.ws}/v1/stream?model={model}") as ws:
        ws.send(json.dumps(start or {"type": "start", "sample_rate": rate, **({"token": token} if token else {})}))
        step = 2 * int(rate * frame_s)
        reader = threading.Thread(target=lambda: events.extend(receive_all(ws)))
        reader.start()
        for i in range(0, len(pcm), step):
            ws.send(pcm[i:i + step])
        ws.send(json.dumps({"type": "stop"}))
        reader.join(60)
        code = ws.close_code
    return events, code


def test_stream_equals_timeline(server, recognizers, audio):
    path = audio / "conversation.wav"
    want = [s.to_dict() for s in timeline(path, recognizers["fast"])]
    events, code = stream(server, path, frame_s=0.037)  # frames cut mid-sample-pair too
    assert code == 1000 and events[0]["type"] == "ready" and events[-1]["type"] == "end"
    segments = [{k: v for k, v in e.items() if k != "type"} for e in events if e["type"] == "segment"]
    assert len(segments) == len(want) == events[-1]["segments"]
    for got, exp in zip(segments, want):
        assert (got["start"], got["end"], got["label"]) == (exp["start"], exp["end"], exp["label"])
        assert got["scores"] == pytest.approx(exp["scores"], abs=1e-5)
    assert any(e["type"] == "progress" for e in events)
    # A declared rate (what a browser sends) is resampled: the same segments within a frame or two.
    events, code = stream(server, path, rate=48000)
    segments = [e for e in events if e["type"] == "segment"]
    assert code == 1000 and [s["label"] for s in segments] == [w["label"] for w in want]
    for got, exp in zip(segments, want):
        assert abs(got["start"] - exp["start"]) < 0.05 and abs(got["end"] - exp["end"]) < 0.05


def test_stream_segments_arrive_while_streaming(server, audio):
    """Causal: a segment's event comes before the stream ends, soon after the segment's audio was sent."""
    y, sr = sf.read(audio / "conversation.wav", dtype="int16")
    with ws_client.connect(f"{server.ws}/v1/stream?model=fast") as ws:
        ws.send(y[:1600].tobytes())  # no start message: 16 kHz by default
        assert json.loads(ws.recv())["type"] == "ready"
        sent = 1600
        first = None
        while sent < len(y) and first is None:
            ws.send(y[sent:sent + 1600].tobytes())
            sent += 1600
            try:
                while True:
                    event = json.loads(ws.recv(timeout=0.02))
                    if event["type"] == "segment":
                        first = event
                        break
            except TimeoutError:
                pass
        assert first is not None and sent < len(y), "no segment before the end of the stream"
        assert sent / sr - first["end"] < 1.5  # the VAD decides within a second (plus the 0.3 s gap)


def test_stream_errors(server, guarded, audio):
    def refused(url, first, *, headers=None):
        with ws_client.connect(url, additional_headers=headers) as ws:
            if first is not None:
                ws.send(first)
            return receive_all(ws), ws.close_code

    events, code = refused(f"{server.ws}/v1/stream", "hello")
    assert code == 1003 and events[-1]["type"] == "error" and "JSON" in events[-1]["detail"]
    events, code = refused(f"{server.ws}/v1/stream", json.dumps({"type": "dance"}))
    assert code == 1003
    events, code = refused(f"{server.ws}/v1/stream?model=fast&adapt=true", json.dumps({"type": "start"}))
    assert code == 1008 and "adapted head" in events[-1]["detail"]
    events, code = refused(f"{server.ws}/v1/stream?model=default", json.dumps({"type": "start", "speaker": "../x"}))
    assert code == 1008 and "letters" in events[-1]["detail"]
    events, code = refused(f"{server.ws}/v1/stream", json.dumps({"type": "start", "sample_rate": 5}))
    assert code == 1008 and "sample_rate" in events[-1]["detail"]
    events, code = refused(f"{guarded.ws}/v1/stream", json.dumps({"type": "start"}))
    assert code == 1008 and "token" in events[-1]["detail"]
    events, code = stream(guarded, audio / "conversation.wav", token=TOKEN)
    assert code == 1000 and events[-1]["type"] == "end"
    # A page of another site cannot open the stream (browsers apply no CORS to WebSockets).
    with pytest.raises(Exception, match="403"):
        refused(f"{server.ws}/v1/stream", None, headers={"origin": "http://attacker.example"})
    # Past the limit of two streams at once: "busy", 1013 (try again later).
    with ws_client.connect(f"{server.ws}/v1/stream") as a, ws_client.connect(f"{server.ws}/v1/stream") as b:
        for ws in (a, b):
            ws.send(json.dumps({"type": "start"}))
            assert json.loads(ws.recv())["type"] == "ready"
        events, code = refused(f"{server.ws}/v1/stream", None)
        assert code == 1013 and events[-1]["error"] == "busy"


def test_stream_disconnect_mid_segment(server, audio):
    y, _ = sf.read(audio / "conversation.wav", dtype="int16")
    for _ in range(3):
        with ws_client.connect(f"{server.ws}/v1/stream") as ws:
            ws.send(y[:16000 * 3].tobytes())  # 1 s of silence, then into the first clip
            ws.socket.shutdown(socket.SHUT_RDWR)  # gone without a close frame
            ws.socket.close()
    deadline = time.monotonic() + 10
    while httpx.get(server.url + "/health").json()["streams"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(server.url + "/health").json()["streams"] == 0
    events, code = stream(server, audio / "conversation.wav")
    assert code == 1000 and events[-1]["segments"] == 3


# --- shutdown ----------------------------------------------------------------------------------
def test_sigterm_finishes_the_request_in_flight(tmp_path):
    s = Server("--model", "fast", tmp=tmp_path)
    try:
        body = clips(1)[0].read_bytes()
        conn = socket.create_connection(("127.0.0.1", s.port))
        conn.sendall(f"POST /v1/predict?filename=a.flac HTTP/1.1\r\nHost: 127.0.0.1:{s.port}\r\n"
                     f"Content-Type: audio/flac\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:1000])
        time.sleep(0.5)  # the request is in the handler, reading its body
        s.proc.send_signal(15)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # new connections are refused once shutdown has begun
            try:
                socket.create_connection(("127.0.0.1", s.port), timeout=1).close()
                time.sleep(0.1)
            except OSError:
                break
        else:
            pytest.fail("still accepting connections after SIGTERM")
        conn.sendall(body[1000:])
        response = b""
        while chunk := conn.recv(65536):
            response += chunk
        head, _, payload = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), response[:300]
        assert json.loads(payload)["results"][0]["source"] == "a.flac"
        assert s.proc.wait(30) in (0, -15)
        assert s.temporaries() == []
        assert "Traceback" not in "".join(s.log)
    finally:
        s.stop()
