"""The web viewer in headless Chromium against the real service: the page loads, finds the streamed session, and shows
its prediction, the colour and colour-mapped depth previews, the timeline and the modality health; a session that
ends stays on screen and in the list, marked ended. A screenshot is saved under the test's tmp path and copied to
outputs/viewer.png."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from clients.sdk import Backpressure, Client, SessionCreate, Stream
from rgbd import Frame
from server.api.routes.viewer import depth_colormap
from tests.clients.conftest import API_KEY, CLASSES, FPS, H, W
from training.synth import SynthConfig, SynthSequence

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
STREAM = SessionCreate(camera="viewer-test", width=W, height=H, depth_scale=0.001, tick_hz=FPS,
                       backpressure=Backpressure.BLOCK)  # fmt: skip


@pytest.fixture(scope="module")
def recording() -> list[Frame]:
    """40 frames of a synthetic-world sequence (a person acting in a room) at the stream's resolution."""
    return list(SynthSequence(SynthConfig(n_sequences=1, frames=40, width=W, height=H, fps=FPS, seed=3), 0).frames())


@pytest.fixture()
def streaming(live_url: str, recording: list[Frame]) -> Iterator[tuple[Client, Stream]]:
    """An attached session that has streamed 30 frames of a synthetic recording (kept open during the test)."""
    with Client(live_url, token=API_KEY) as client, client.stream(STREAM) as stream:
        for frame in recording[:30]:
            stream.send_frame(frame)
        stream.drain(timeout=30.0)
        yield client, stream


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[object]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"headless browser missing: {CHROMIUM}, {CHROMEDRIVER} (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: object, condition: str, timeout: float = 20.0) -> object:
    """Wait until the JavaScript expression `condition` is truthy; returns its value."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(
            lambda d: d.execute_script(f"return {condition}")
        )
    except TimeoutException:
        page = driver.execute_script(  # type: ignore[attr-defined]
            "return ['status', 'current-action', 'health', 'sessions'].map(id => id + '=' + "
            "document.getElementById(id).textContent).join(' | ') + ' | images ' + "
            "['color-img', 'depth-img'].map(id => document.getElementById(id).naturalWidth).join(',')"
        )
        raise AssertionError(f"timed out after {timeout} s waiting for {condition}; page: {page}") from None


def test_viewer_shows_the_streamed_sessions_prediction_frames_and_health(
    live_url: str, streaming: tuple[Client, Stream], recording: list[Frame], browser: object, tmp_path: Path
) -> None:
    client, stream = streaming
    driver = browser
    driver.get(f"{live_url}/viewer/?api_key={API_KEY}")  # type: ignore[attr-defined]
    # the page finds the attached session by itself and long-polls its predictions
    _wait(driver, f"document.querySelector('#sessions button[data-session-id=\"{stream.session_id}\"]')")
    _wait(driver, "document.getElementById('status').dataset.state === 'live'")
    shown = driver.execute_script("return document.getElementById('current-action').textContent")  # type: ignore[attr-defined]
    latest = client.latest_prediction(stream.session_id or "")
    assert latest is not None and shown == latest.current.label and shown in CLASSES
    # the preview images load (colour as streamed, depth colour-mapped)
    _wait(driver, "['color-img', 'depth-img'].every(id => document.getElementById(id).naturalWidth === 160)")
    health = driver.execute_script("return document.getElementById('health').textContent")  # type: ignore[attr-defined]
    assert "fused" in health and "depth" in health
    # the timeline moves with new predictions
    before = latest.seq
    for frame in recording[30:40]:
        stream.send_frame(frame)
    stream.drain(timeout=30.0)
    _wait(driver, f"document.getElementById('status').textContent.includes('prediction #{before + 10}')")
    painted = driver.execute_script(  # type: ignore[attr-defined]
        "const c = document.getElementById('timeline');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;"
    )
    assert painted > 1000
    shot = tmp_path / "viewer.png"
    assert driver.save_screenshot(str(shot))  # type: ignore[attr-defined]
    outputs = ROOT / "outputs"
    outputs.mkdir(exist_ok=True)
    shutil.copy(shot, outputs / "viewer.png")
    assert cv2.imread(str(shot)) is not None


def test_viewer_says_stream_ended_when_its_session_closes_and_keeps_listing_it(
    live_url: str, recording: list[Frame], browser: object
) -> None:
    driver = browser
    with Client(live_url, token=API_KEY) as client:
        stream = client.stream(STREAM.model_copy(update={"camera": "ending-test"}))
        stream.open()
        for frame in recording[:10]:
            stream.send_frame(frame)
        stream.drain(timeout=30.0)
        session_id = stream.session_id
        driver.get(f"{live_url}/viewer/?api_key={API_KEY}")  # type: ignore[attr-defined]
        _wait(driver, "document.getElementById('status').dataset.state === 'live'")
        _wait(driver, f"document.querySelector('#sessions button[data-session-id=\"{session_id}\"]')")
        stream.close()  # bye: the server closes the session
    _wait(driver, "document.getElementById('status').dataset.state === 'ended'")
    status = driver.execute_script("return document.getElementById('status').textContent")  # type: ignore[attr-defined]
    assert status.startswith(f"stream ended · session {session_id[:12]}") and "404" not in status
    listed = driver.execute_script(  # type: ignore[attr-defined]
        f"return document.querySelector('#sessions button[data-session-id=\"{session_id}\"]').textContent"
    )
    assert "ended · ending-test · 160x120" in listed
    assert "no session yet" not in driver.execute_script("return document.getElementById('sessions').textContent")  # type: ignore[attr-defined]
    assert driver.execute_script("return document.getElementById('current-action').textContent") in CLASSES  # type: ignore[attr-defined]


def test_viewer_follows_the_session_named_in_the_url(
    live_url: str, streaming: tuple[Client, Stream], browser: object
) -> None:
    _, stream = streaming
    driver = browser
    driver.get(f"{live_url}/viewer/?api_key={API_KEY}&session={stream.session_id}")  # type: ignore[attr-defined]
    _wait(driver, "document.getElementById('status').dataset.state === 'live'")
    title = driver.execute_script("return document.getElementById('session-title').textContent")  # type: ignore[attr-defined]
    assert title == f"session {stream.session_id}"


def test_viewer_preview_images_need_the_api_key(live_url: str, streaming: tuple[Client, Stream]) -> None:
    _, stream = streaming
    url = f"{live_url}/viewer/api/sessions/{stream.session_id}/depth.jpg"
    assert httpx.get(url).status_code == 401
    response = httpx.get(url, headers={"X-API-Key": API_KEY})
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (H, W, 3)


def test_viewer_page_is_served_without_a_key_and_unknown_files_are_404(live_url: str) -> None:
    page = httpx.get(f"{live_url}/viewer", follow_redirects=True)
    assert page.status_code == 200 and "<title>R3D viewer</title>" in page.text
    assert httpx.get(f"{live_url}/viewer/viewer.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{live_url}/viewer/secrets.txt").status_code == 404


def test_depth_colormap_near_is_red_far_is_blue_and_holes_are_black() -> None:
    depth = np.array([[500, 4000, 0]], np.uint16)
    bgr = depth_colormap(depth, 0.001)
    near, far, hole = bgr[0, 0].astype(int), bgr[0, 1].astype(int), bgr[0, 2]
    assert near[2] > near[0] and far[0] > far[2]  # BGR: red dominates near, blue dominates far
    assert hole.tolist() == [0, 0, 0]


def _js(driver: object, script: str) -> object:
    return driver.execute_script(script)  # type: ignore[attr-defined]


COLOUR_STATUS = "document.querySelector('#streams [data-stream=\"colour\"]')?.textContent"
# [colour picture shown, placeholder shown, placeholder text], as laid out (computed display, not just the attribute)
COLOUR_PANEL = ("const shown = (id) => getComputedStyle(document.getElementById(id)).display !== 'none'; "
                "return [shown('color-img'), shown('color-missing'), "
                "document.getElementById('color-missing').textContent]")  # fmt: skip


def test_viewer_shows_no_colour_camera_for_a_depth_only_stream(
    depth_only_url: str, recording: list[Frame], browser: object
) -> None:
    driver = browser
    stream_info = STREAM.model_copy(update={"camera": "tof", "color": False})
    with Client(depth_only_url, token=API_KEY) as client, client.stream(stream_info) as stream:
        for frame in recording[:20]:
            stream.send_frame(frame)
        stream.drain(timeout=30.0)
        driver.get(f"{depth_only_url}/viewer/?api_key={API_KEY}&session={stream.session_id}")  # type: ignore[attr-defined]
        _wait(driver, "document.getElementById('status').dataset.state === 'live'")
        _wait(driver, f"{COLOUR_STATUS} === 'colour: no colour camera'")
        assert _js(driver, COLOUR_PANEL) == [False, True, "no colour camera (depth-only stream)"]
        button = f'#sessions button[data-session-id="{stream.session_id}"]'
        listed = _js(driver, f"return document.querySelector('{button}').textContent")
        assert "tof · 160x120 · depth only" in str(listed)
        assert "RGB n/a" in str(_js(driver, "return document.getElementById('health').textContent"))


def test_viewer_shows_colour_missing_when_an_rgbd_streams_colour_stops(
    depth_only_url: str, recording: list[Frame], browser: object
) -> None:
    driver = browser
    with Client(depth_only_url, token=API_KEY) as client, client.stream(STREAM) as stream:
        for frame in recording[:20]:
            stream.send_frame(frame)
        stream.drain(timeout=30.0)
        driver.get(f"{depth_only_url}/viewer/?api_key={API_KEY}&session={stream.session_id}")  # type: ignore[attr-defined]
        _wait(driver, f"{COLOUR_STATUS} === 'colour: not used (depth-only model)'")
        _wait(driver, "document.getElementById('color-img').naturalWidth === 160")  # the colour it is sent is shown
        assert _js(driver, COLOUR_PANEL)[:2] == [True, False]  # type: ignore[index]
        for i in range(20, 50):  # the colour camera stops; depth goes on (health looks again once a second)
            stream.send(None, recording[i % len(recording)].depth, i / FPS)
        stream.drain(timeout=30.0)
        _wait(driver, f"{COLOUR_STATUS} === 'colour: missing (frames arrive without colour)'")
        assert _js(driver, COLOUR_PANEL) == [False, True, "colour missing: the stream's frames arrive without colour"]
        assert stream.stats.errors == 0
