"""The page of ``ser serve`` in a real headless Chromium (Debian's ``chromium`` + ``chromedriver``).

The browser's fake microphone plays a WAV of RAVDESS clips with silences between them; the live
timeline the page shows must be the one ``ser predict --timeline`` gives for that file. Screenshots
go to ``$SER_SCREENSHOTS`` (else the test's temporary folder).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from serve_support import Server, clips, conversation

from ser.inference import Recognizer
from ser.timeline import timeline

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs chromium and chromedriver (apt-get install "
                                                                   "chromium chromium-driver)")


def browser(profile: Path, *flags: str):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1100,1300", *flags):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.set_page_load_timeout(30)
    return driver


def wait(driver, script: str, *, timeout: float = 30.0, what: str = ""):
    """Poll a JavaScript expression until it is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script("return " + script)
        if value:
            return value
        time.sleep(0.1)
    message = driver.execute_script("return document.getElementById('message').textContent")
    raise AssertionError(f"timed out waiting for {what or script}; message on the page: {message!r}")


def screenshot(driver, name: str, tmp: Path) -> Path:
    folder = Path(os.environ.get("SER_SCREENSHOTS") or tmp)
    folder.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The server (fast and default), the conversation the fake microphone plays, and the browser."""
    tmp = tmp_path_factory.mktemp("browser")
    wav = conversation(tmp / "conversation.wav", clips(3))
    server = Server("--model", "fast", "--model", "default", tmp=tmp)
    try:
        driver = browser(tmp / "profile", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                         f"--use-file-for-fake-audio-capture={wav}")
    except Exception:
        server.stop()
        raise
    yield server, driver, wav, tmp
    driver.quit()
    server.stop()


@pytest.fixture(scope="module")
def fast():
    return Recognizer.load("fast")


def open_page(driver, server, model: str = "fast") -> None:
    driver.get(server.url + "/")
    wait(driver, "document.body.dataset.ready === 'true'", what="the page")
    driver.execute_script(f"const s = document.getElementById('model'); s.value = '{model}';"
                          "s.dispatchEvent(new Event('change'));")


def segments(driver, selector: str) -> list[tuple[float, float, str]]:
    return [(float(li.get_attribute("data-start")), float(li.get_attribute("data-end")), li.get_attribute("data-label"))
            for li in driver.find_elements(By.CSS_SELECTOR, selector)]


def test_upload_clip_and_long_recording(setup, fast):
    server, driver, wav, tmp = setup
    open_page(driver, server)
    clip = clips(2)[1]
    driver.find_element(By.ID, "file-input").send_keys(str(clip))
    card = "document.querySelector('article.card[data-state=done]')"
    wait(driver, card, what="the clip's bar chart")
    label = driver.execute_script(f"return {card}.dataset.label")
    assert label == fast.predict_file(clip).label
    bars = driver.find_elements(By.CSS_SELECTOR, "article.card .bars .fill")
    assert len(bars) == 8 and all(b.value_of_css_property("width") for b in bars)
    # Longer than 10 s: drawn as a timeline of coloured segments.
    driver.find_element(By.ID, "file-input").send_keys(str(wav))
    wait(driver, "document.querySelectorAll('article.card.wide[data-state=done]').length === 1", what="the timeline")
    want = [(s.start, s.end, s.label) for s in timeline(wav, fast)]
    got = segments(driver, "article.card.wide li")
    assert [g[2] for g in got] == [w[2] for w in want] and len(got) == 3
    assert all(abs(g[0] - w[0]) < 1e-3 and abs(g[1] - w[1]) < 1e-3 for g, w in zip(got, want))
    assert len(driver.find_elements(By.CSS_SELECTOR, "article.card.wide .timeline .seg")) == 3
    screenshot(driver, "serve-upload", tmp)


def test_record_fake_microphone_live_timeline(setup, fast):
    """Record → the fake microphone's file streams over the WebSocket → the same segments as --timeline."""
    server, driver, wav, tmp = setup
    open_page(driver, server)
    want = [(s.start, s.end, s.label) for s in timeline(wav, fast)]
    import soundfile as sf

    length = sf.info(str(wav)).duration
    driver.find_element(By.ID, "record").click()
    wait(driver, "document.getElementById('record').getAttribute('aria-pressed') === 'true'")
    wait(driver, "document.querySelectorAll('#live-list li').length >= 1", timeout=length, what="a live segment")
    # Segments appear while recording, before Stop is pressed.
    assert driver.find_element(By.ID, "record").get_attribute("aria-pressed") == "true"
    wait(driver, f"document.querySelectorAll('#live-list li').length >= {len(want)}", timeout=length + 5,
         what="every segment of the file")
    driver.find_element(By.ID, "record").click()  # in the file's final silence, before the fake device loops it
    wait(driver, "document.getElementById('live-status').textContent.startsWith('Stopped')", what="the end event")
    got = segments(driver, "#live-list li")[:len(want)]
    # The fake device starts the file when capture starts (offset ~0, less than the file's leading
    # second of silence on a slow machine); the segments must keep their places relative to each other.
    offset = got[0][0] - want[0][0]
    assert abs(offset) < 1.0, (got, want)
    for g, w in zip(got, want):
        assert g[2] == w[2], (got, want)
        assert abs(g[0] - offset - w[0]) < 0.1 and abs(g[1] - offset - w[1]) < 0.1, (got, want)
    assert len(driver.find_elements(By.CSS_SELECTOR, "#live-timeline .seg")) >= len(want)
    screenshot(driver, "serve-record", tmp)


def test_enrol_my_voice(setup):
    """Enrol (six sentences from the fake microphone) with the default model, then predict with the profile."""
    server, driver, _, tmp = setup
    open_page(driver, server, model="default")
    driver.find_element(By.ID, "enrol-name").send_keys("tester")
    driver.find_element(By.ID, "enrol-start").click()
    wait(driver, "!document.getElementById('enrol-steps').hidden", what="the enrolment steps")
    for _ in range(6):
        time.sleep(0.8)
        driver.find_element(By.ID, "enrol-next").click()
    status = wait(driver, "document.getElementById('enrol-status').textContent.match(/^(Enrolled|Enrolment failed|Too)/)"
                          " && document.getElementById('enrol-status').textContent", timeout=60, what="the enrolment")
    assert status.startswith("Enrolled"), status
    assert driver.execute_script("return document.getElementById('speaker').value") == "tester"
    assert "tester" in driver.find_element(By.ID, "enrolled").text
    driver.find_element(By.ID, "file-input").send_keys(str(clips(1)[0]))
    wait(driver, "document.querySelector('article.card[data-state=done]')", timeout=60, what="a prediction")
    screenshot(driver, "serve-enrol", tmp)


def test_keyboard_reaches_every_control(setup):
    server, driver, _, _ = setup
    open_page(driver, server)
    body = driver.find_element(By.TAG_NAME, "body")
    body.click()
    seen = []
    for _ in range(12):
        webdriver.ActionChains(driver).send_keys(Keys.TAB).perform()
        seen.append(driver.execute_script("return document.activeElement.id"))
    for control in ("model", "speaker", "choose", "record", "enrol-name"):
        assert control in seen, seen


def test_refused_microphone_says_so(setup, tmp_path):
    server, _, _, tmp = setup
    driver = browser(tmp_path / "profile", "--use-fake-device-for-media-stream", "--deny-permission-prompts")
    try:
        open_page(driver, server)
        driver.find_element(By.ID, "record").click()
        text = wait(driver, "document.getElementById('message').textContent", what="the refusal message")
        assert "Microphone access was refused" in text and "allow the microphone" in text
        assert driver.find_element(By.ID, "record").get_attribute("aria-pressed") == "false"
        assert driver.find_element(By.ID, "message").is_displayed()
        screenshot(driver, "serve-refused", tmp)
    finally:
        driver.quit()
