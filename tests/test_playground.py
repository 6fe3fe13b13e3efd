"""The playground at `/` in a real browser, against the real engine.

Debian's chromium (`/usr/bin/chromium`) driven by Playwright for Python; Playwright's own
browser download is never used. Assertions read what the page itself measured: bytes received,
the AudioContext clock, the level meter, the first-audio latency it shows. Screenshots land in
`.cache/artifacts/playground/` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from app.config import Settings
from app.server import create_app
from tests.audio_clips import reference_wav
from tests.servers import serve
from tests.test_integration import engine_counter, engine_gauge, wait_engine_idle

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / ".cache" / "artifacts" / "playground"
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--autoplay-policy=no-user-gesture-required", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run"]
HOW_TO_GET_A_BROWSER = (
    "needs Debian's chromium at /usr/bin/chromium (`apt-get install -y chromium`) and the "
    "playwright package (`pip install -r requirements-dev.txt`; never `playwright install`)")
SPEECH = "/v1/audio/speech"
DONE = "() => ['done', 'error', 'stopped'].includes(window.playground.state.phase)"
WS_ROUTE = "/ws/synthesize"
API_KEY = "playground-test-key"


def _settings(engine, data_dir: Path, **overrides) -> Settings:
    return Settings(TTS_API=engine.config.url, SNAC_MODEL="random", DYNAMIC_BATCHING=True,
                    MICROSLEEP=0.02, ENGINE_STARTUP_TIMEOUT_S=60, DATA_DIR=str(data_dir),
                    **overrides)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"no browser: {HOW_TO_GET_A_BROWSER}")
    sync_api = pytest.importorskip("playwright.sync_api", reason=f"no playwright: "
                                   f"{HOW_TO_GET_A_BROWSER}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=LAUNCH_ARGS)
        yield launched
        launched.close()


@dataclass
class Served:
    url: str
    app: Starlette


@pytest.fixture(scope="module")
def api(browser, engine, tmp_path_factory) -> Iterator[Served]:
    app = create_app(_settings(engine, tmp_path_factory.mktemp("playground-data")))
    with serve(app) as url:
        yield Served(url, app)


@dataclass
class Playground:
    """One browser tab on the playground, with every console error and page error it logs."""

    page: object
    errors: list[str] = field(default_factory=list)

    def state(self) -> dict:
        return self.page.evaluate("() => ({...window.playground.state, last: null})")

    def live(self) -> dict:
        return self.page.evaluate("() => ({...window.playground.live, socket: null})")

    def audio_clock(self) -> float:
        return self.page.evaluate("() => window.playground.player.ctx.currentTime")

    def shot(self, name: str, **options) -> Path:
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), **options)
        return path

    def set_range(self, selector: str, value: float) -> None:
        self.page.eval_on_selector(selector, "(el, v) => { el.value = v; "
                                   "el.dispatchEvent(new Event('input')); }", value)


def open_playground(browser, url: str, **context_options) -> Playground:
    context = browser.new_context(viewport={"width": 900, "height": 1100}, accept_downloads=True,
                                  **context_options)
    page = context.new_page()
    tab = Playground(page)
    page.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: tab.errors.append(f"page error: {e}"))
    page.goto(url + "/")
    page.wait_for_function("() => window.playground && window.playground.voices.loaded")
    return tab


@pytest.fixture
def playground(browser, api) -> Iterator[Playground]:
    tab = open_playground(browser, api.url)
    yield tab
    tab.page.context.close()


def _speak_and_wait(tab: Playground, timeout_ms: float = 120_000) -> dict:
    tab.page.click("#speak")
    tab.page.wait_for_function(DONE, timeout=timeout_ms)
    return tab.state()


def test_page_loads_without_console_errors_and_lists_voices(playground, api):
    page = playground.page
    groups = dict(page.evaluate("""() => [...document.querySelectorAll('#voice optgroup')]
        .map(g => [g.label, [...g.querySelectorAll('option')].map(o => o.value)])"""))
    listed = httpx.get(api.url + "/v1/audio/voices", timeout=30).json()["data"]
    assert groups["Built-in speakers"] == [v["id"] for v in listed if v["type"] == "builtin"]
    assert groups["OpenAI names"] == [v["id"] for v in listed if v["type"] == "alias"]
    assert {"alloy", "nova"} <= set(groups["OpenAI names"])
    assert page.is_visible("#demo-banner")  # the demo engine and random SNAC weights
    assert "noise, not speech" in page.inner_text("#demo-banner")
    playground.shot("loaded", full_page=True)
    page.set_viewport_size({"width": 380, "height": 800})
    playground.shot("narrow", full_page=True)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 380  # no sideways scroll
    assert playground.errors == []


def _raw_first_audio_ms(url: str, text: str) -> float:
    """First-audio latency of the same request from httpx, to compare with the browser's."""
    started = time.perf_counter()
    with httpx.stream("POST", url + SPEECH, timeout=120, json={
            "input": text, "voice": "husein", "response_format": "pcm"}) as response:
        for chunk in response.iter_bytes():
            if chunk:
                return (time.perf_counter() - started) * 1000
    raise AssertionError("no audio")


def test_speak_streams_audio_that_plays(playground, api):
    page = playground.page
    text = ("Hello there. This sentence is streamed to the browser and played while it "
            "arrives, chunk after chunk.")
    raw_ms = _raw_first_audio_ms(api.url, text)
    page.fill("#text", text)
    clock_before = page.evaluate("() => window.playground.player.ctx?.currentTime ?? 0")
    page.click("#speak")
    page.wait_for_function("() => window.playground.state.bytes > 0", timeout=120_000)
    page.wait_for_function("() => window.playground.scope.level > 0", timeout=30_000)
    playground.shot("speaking")
    page.wait_for_function(DONE, timeout=120_000)
    state = playground.state()
    assert state["phase"] == "done", state
    assert state["bytes"] > 0 and state["bytes"] % 2 == 0
    # Every sample received was scheduled exactly once, across however many reads.
    scheduled = page.evaluate("() => window.playground.player.scheduledSamples")
    assert scheduled * 2 == state["bytes"]
    assert state["audioSeconds"] == pytest.approx(state["bytes"] / 2 / 24000)
    # The audio clock runs while the scheduled audio plays.
    page.wait_for_function(f"() => window.playground.player.ctx.currentTime > {clock_before} "
                           f"+ Math.min(0.5, {state['audioSeconds']} / 2)", timeout=30_000)
    assert re.fullmatch(r"\d+ ms", page.inner_text("#stat-latency"))
    assert 0 < state["firstAudioMs"] < 60_000
    assert state["rtf"] == pytest.approx(state["wallSeconds"] / state["audioSeconds"])
    assert page.inner_text("#stat-rtf") == f"{state['rtf']:.2f}"
    playground.shot("spoken")
    (ARTIFACTS / "speak.json").write_text(json.dumps(
        {**{k: state[k] for k in ("firstAudioMs", "audioSeconds", "wallSeconds", "rtf",
                                   "bytes")}, "httpxFirstAudioMs": raw_ms}, indent=1))
    print(f"\nbrowser first-audio latency {state['firstAudioMs']:.0f} ms (httpx, same request: "
          f"{raw_ms:.0f} ms), {state['audioSeconds']:.2f} s of audio, RTF {state['rtf']:.2f}")

    page.select_option("#format", "wav")
    with page.expect_download() as wav_download:
        page.click("#download")
    wav = Path(wav_download.value.path()).read_bytes()
    assert wav[:4] == b"RIFF" and len(wav) == 44 + state["bytes"]
    assert wav_download.value.suggested_filename.endswith(".wav")

    page.select_option("#format", "mp3")
    with page.expect_download(timeout=120_000) as mp3_download:
        page.click("#download")
    mp3 = Path(mp3_download.value.path()).read_bytes()
    assert mp3[:3] == b"ID3" or (mp3[0] == 0xFF and mp3[1] & 0xE0 == 0xE0), mp3[:8]
    assert mp3_download.value.suggested_filename.endswith(".mp3")
    assert playground.errors == []


def test_stop_aborts_the_engine_request(playground, engine):
    # At temperature 0 the demo model never stops by itself: without the abort the engine
    # would generate all max_tokens (about 5 s of its time).
    page = playground.page
    wait_engine_idle(engine)
    tokens_before = engine_counter(engine, "vllm:generation_tokens_total", "")
    max_tokens = 6000
    page.fill("#text", "This sentence is long so that generation takes a while. " * 20)
    playground.set_range("#temperature", 0)
    page.click("summary:has-text('Streaming options')")
    page.fill("#max-tokens", str(max_tokens))
    page.fill("#playback-speed", "0.3")
    page.fill("#overlap-speed", "0.05")
    page.click("#speak")
    # Stop once the engine has accepted the request (the tiny model can outrun the proxy).
    page.wait_for_function("() => window.playground.state.phase === 'streaming'",
                           timeout=120_000)
    page.click("#stop")
    page.wait_for_function(DONE, timeout=30_000)
    assert playground.state()["phase"] == "stopped"
    assert page.inner_text("#speak-status") == "Stopped."
    wait_engine_idle(engine)
    assert engine_gauge(engine, "vllm:num_requests_running") == 0
    assert engine_counter(engine, "vllm:generation_tokens_total", "") - tokens_before < (
        max_tokens / 2)
    assert not page.evaluate("() => window.playground.player.playing()")
    assert playground.errors == []


def test_custom_voice_is_created_used_and_deleted(playground, api):
    page = playground.page
    page.set_input_files("#voice-file", files=[{
        "name": "reference.wav", "mimeType": "audio/wav", "buffer": reference_wav(3.0)}])
    page.fill("#voice-name", "Playground voice")
    page.fill("#voice-text", "I wonder if I shall ever be happy enough to have real lace.")
    page.click("#voice-create")
    page.wait_for_selector("#custom-voices li[data-voice-id]", timeout=120_000)
    voice_id = page.get_attribute("#custom-voices li[data-voice-id]", "data-voice-id")
    assert voice_id.startswith("voice_")
    custom = page.evaluate("""() => [...document.querySelectorAll(
        '#voice optgroup[label="Custom voices"] option')].map(o => o.value)""")
    assert custom == [voice_id] and page.input_value("#voice") == voice_id
    playground.shot("custom-voice", full_page=True)

    page.fill("#text", "Spoken in the custom voice.")
    with page.expect_request(lambda r: r.url.endswith(SPEECH)) as sent:
        state = _speak_and_wait(playground)
    assert json.loads(sent.value.post_data)["voice"] == {"id": voice_id}
    assert state["phase"] == "done" and state["bytes"] > 0, state

    page.get_by_role("button", name="Delete voice Playground voice").click()
    page.wait_for_selector("#custom-voices li.empty")
    assert voice_id not in page.evaluate(
        "() => [...document.querySelectorAll('#voice option')].map(o => o.value)")
    assert httpx.get(f"{api.url}/v1/audio/voices/{voice_id}", timeout=30).status_code == 404
    assert playground.errors == []


def test_recorded_clip_becomes_a_custom_voice(browser, api):
    # Chromium's fake capture device (a periodic beep) stands in for a microphone.
    mic_browser = browser.browser_type.launch(
        executable_path=str(CHROMIUM), headless=True,
        args=[*LAUNCH_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
    try:
        tab = open_playground(mic_browser, api.url, permissions=["microphone"])
        page = tab.page
        assert page.is_visible("#record")
        page.click("#record")
        page.wait_for_function("() => document.getElementById('record').textContent.includes('Stop')")
        page.wait_for_timeout(3000)
        page.click("#record")
        page.wait_for_selector("#record-preview", state="visible")
        page.fill("#voice-name", "Recorded voice")
        page.fill("#voice-text", "A short recording made in the browser.")
        page.click("#voice-create")
        page.wait_for_function("() => document.querySelector('#custom-voices li[data-voice-id]')"
                               " || !document.getElementById('voice-error').hidden",
                               timeout=120_000)
        assert page.is_hidden("#voice-error"), page.inner_text("#voice-error")
        voice_id = page.get_attribute("#custom-voices li[data-voice-id]", "data-voice-id")
        assert page.input_value("#voice") == voice_id
        tab.shot("recorded-voice", full_page=True)
        assert tab.errors == []
    finally:
        mic_browser.close()
    assert httpx.delete(f"{api.url}/v1/audio/voices/{voice_id}", timeout=30).status_code == 200


def test_empty_text_shows_the_servers_error_in_words(playground, api):
    page = playground.page
    expected = httpx.post(api.url + SPEECH, json={"input": "", "voice": "husein"},
                          timeout=30).json()["error"]["message"]
    page.fill("#text", "")
    state = _speak_and_wait(playground)
    assert state["phase"] == "error"
    page.wait_for_selector("#speak-error", state="visible")
    assert page.inner_text("#speak-error") == expected
    assert not expected.lstrip().startswith("{")
    playground.shot("error")
    # The browser logs the 400 itself; nothing else may go wrong.
    assert all("status of 400" in e for e in playground.errors), playground.errors


def test_websocket_mode_speaks_each_sentence_as_it_completes(playground, api):
    if not any(getattr(route, "path", None) == WS_ROUTE for route in api.app.routes):
        pytest.skip(f"the app has no {WS_ROUTE} route yet; the page speaks seed 004's "
                    "protocol against it once it exists")
    page = playground.page
    page.click("#ws-connect")
    page.wait_for_function("() => window.playground.live.phase === 'ready'", timeout=30_000)
    page.locator("#ws-text").press_sequentially("Hello there. ", delay=15)
    # The first sentence is spoken before the second one is typed.
    page.wait_for_function("() => window.playground.live.audioMessages > 0", timeout=120_000)
    first = playground.live()
    page.locator("#ws-text").press_sequentially("How are you today? And then", delay=15)
    page.wait_for_function(f"() => window.playground.live.bytes > {first['bytes']}",
                           timeout=120_000)
    playground.shot("live")
    # Cancel stops the audio in flight; the session goes on with the next sentence.
    page.click("#ws-cancel")
    page.wait_for_function("() => document.getElementById('ws-status').textContent"
                           ".startsWith('Cancelled')", timeout=30_000)
    assert not page.evaluate("() => window.playground.player.playing()")
    cancelled = playground.live()
    page.locator("#ws-text").press_sequentially(" One more sentence. ", delay=15)
    page.wait_for_function(f"() => window.playground.live.bytes > {cancelled['bytes']}",
                           timeout=120_000)
    page.click("#ws-finish")
    page.wait_for_function("() => ['complete', 'closed'].includes(window.playground.live.phase)",
                           timeout=120_000)
    live = playground.live()
    assert live["error"] is None, live["error"]
    assert live["phase"] in ("complete", "closed") and live["audioMessages"] >= 2
    assert live["bytes"] > first["bytes"] > 0
    assert page.inner_text("#ws-latency").endswith("ms")
    assert playground.audio_clock() > 0.3
    assert playground.errors == []


def test_api_key_field_appears_on_401_and_the_key_is_used(browser, engine, tmp_path):
    if "api_keys" not in Settings.model_fields:
        pytest.skip("Settings has no API_KEYS yet")
    app = create_app(_settings(engine, tmp_path, API_KEYS=API_KEY))
    with serve(app) as url:
        tab = open_playground(browser, url)
        page = tab.page
        assert not page.evaluate("() => document.getElementById('key-panel').open")
        page.fill("#text", "Hello with a key.")
        state = _speak_and_wait(tab)
        assert state["phase"] == "error"
        assert page.evaluate("() => document.getElementById('key-panel').open")
        assert "API key" in page.inner_text("#speak-error")
        tab.shot("api-key")
        page.fill("#api-key", API_KEY)
        page.click("#key-form button[type=submit]")
        state = _speak_and_wait(tab)
        assert state["phase"] == "done" and state["bytes"] > 0, state
        assert page.evaluate("() => localStorage.getItem('tts-playground.api-key')") == API_KEY
        assert all("status of 401" in e for e in tab.errors), tab.errors
        page.context.close()


ORIGIN_PAGE = "<!doctype html><title>another origin</title><p>Not the API's origin.</p>"

CROSS_ORIGIN_SPEECH = """async (url) => {
  try {
    const r = await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/json'},
                                body: JSON.stringify({input: 'Hello from elsewhere.',
                                                      response_format: 'pcm'})});
    const bytes = (await r.arrayBuffer()).byteLength;
    return {ok: r.ok, status: r.status, bytes, rate: r.headers.get('X-Sample-Rate'),
            requestId: r.headers.get('X-Request-Id'), demo: r.headers.get('X-TTS-Demo')};
  } catch (e) {
    return {failed: String(e)};
  }
}"""


def test_cross_origin_fetch_works_only_with_cors_origins(browser, api, engine, tmp_path):
    if "cors_origins" not in Settings.model_fields:
        pytest.skip("Settings has no CORS_ORIGINS yet")
    origin = Starlette(routes=[Route("/", lambda request: HTMLResponse(ORIGIN_PAGE))])
    app = create_app(_settings(engine, tmp_path, CORS_ORIGINS="*"))
    with serve(origin) as origin_url, serve(app) as cors_url:
        context = browser.new_context()
        page = context.new_page()
        page.goto(origin_url + "/")
        allowed = page.evaluate(CROSS_ORIGIN_SPEECH, cors_url + SPEECH)
        refused = page.evaluate(CROSS_ORIGIN_SPEECH, api.url + SPEECH)
        context.close()
    assert allowed.get("ok") and allowed["bytes"] > 0, allowed
    assert allowed["rate"] == "24000" and allowed["requestId"] and allowed["demo"] == "true"
    assert "failed" in refused and "Failed to fetch" in refused["failed"], refused

