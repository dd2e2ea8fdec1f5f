"""The app in a real browser (Playwright + Debian's chromium, headless), over the tiny model: upload a
video, pick a question type, watch the answer stream in, press Stop mid-answer, see the frames; then
make synthetic QA from the Ask tab's video, review the table, Save, and read the JSONL files.

The screenshots (the Ask tab, then the synthesis tab) go to the tests' temporary folders; with
UPDATE_SCREENSHOT=1 they also replace assets/screenshot.png and assets/screenshot-synth.png (the README's
pictures), so that ordinary runs leave the working tree alone.
"""

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from app_process import free_port
from llava_video_app.config import AppConfig
from llava_video_app.engine import Engine
from llava_video_app.prompts import question_type
from llava_video_app.web.app import build_ui, launch
from llava_video_app.web.ask_tab import VideoChat
from llava_video_app.web.batch_tab import batch_tab
from llava_video_app.web.synth_tab import synth_tab

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FRAMES = 16
MAX_NEW_TOKENS = 1500  # long enough that Stop lands mid-answer

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed "
                       "(apt-get install chromium; .ci/run does it)"),
]


@pytest.fixture
def app_url(tiny_model):
    config = AppConfig(model=str(tiny_model.model_id), quant="fp32", device="cpu", frames=FRAMES,
                       max_new_tokens=MAX_NEW_TOKENS, port=free_port())
    engine = Engine(tiny_model, config)
    step = engine._decode_step

    def paced_step(*args, **kwargs):  # the tiny model is fast enough to finish before a click lands
        time.sleep(0.01)
        return step(*args, **kwargs)

    engine._decode_step = paced_step
    chat = VideoChat(engine)
    demo = build_ui(chat, extra_tabs=[synth_tab])  # both tabs, as app.py builds it (the README's picture)
    launch(demo, config, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{config.port}/", chat
    finally:
        chat.forget_session(None)
        demo.close()


@pytest.fixture
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


def _answer_length(page) -> int:
    bot = page.locator("#chat .bot")
    return len(bot.last.inner_text()) if bot.count() else 0


def test_upload_ask_stream_stop_and_see_the_frames(app_url, page, tmp_path):
    url, chat = app_url
    requested = []  # every request the page makes: none may go to another host (fonts, analytics, CDNs)
    page.on("request", lambda request: requested.append(request.url))
    page.goto(url)
    page.wait_for_selector("#ask")
    assert "tiny" in page.inner_text("#status") or "fp32" in page.inner_text("#status")

    # no video yet: the End box is empty (its hint: empty = to the end), not 0
    # (cleared by the page's load event, which may run just after the first paint)
    page.wait_for_function("document.querySelector('#end input').value === ''", timeout=10_000)
    assert page.get_attribute("#end input", "placeholder") == "to the end"

    # upload a video: its length fills the trim range
    page.set_input_files("#video input[type=file]", str(ROOT / "assets" / "pan.mp4"))
    page.wait_for_function("document.querySelector('#video-info').innerText.includes('8.00 s')")
    assert page.input_value("#end input") == "8"

    # choose a question type: its example question fills the question box
    page.click("#task input")
    page.get_by_role("option", name="Camera Direction", exact=True).click()
    example = question_type("Camera Direction").preset
    page.wait_for_function(f"document.querySelector('#question textarea').value === {example!r}")
    definition = question_type("Camera Direction").definition
    page.wait_for_function(f"document.querySelector('#task-definition').innerText.includes({definition!r})")

    # ask: tokens arrive, the answer grows
    page.click("#ask")
    page.wait_for_function("document.querySelectorAll('#chat .bot').length > 0 && "
                           "document.querySelector('#chat .bot').innerText.length > 0", timeout=30_000)
    first = _answer_length(page)
    deadline = time.monotonic() + 20
    while _answer_length(page) <= first and time.monotonic() < deadline:
        time.sleep(0.1)
    growing = _answer_length(page)
    assert growing > first, "the answer should stream in"

    # Stop mid-answer: the status says so and the text stops growing
    page.click("#stop")
    page.wait_for_function("document.querySelector('#status').innerText.includes('stopped')", timeout=15_000)
    stopped_at = _answer_length(page)
    time.sleep(1.5)
    assert _answer_length(page) == stopped_at, "no more text after Stop"
    stats = chat.holder.engine.last_stats
    assert stats.stopped and 0 < stats.new_tokens < MAX_NEW_TOKENS
    status = page.inner_text("#status")
    assert "tok/s" in status and "first token" in status

    # the frames the model saw, each with its timestamp
    page.wait_for_function(f"document.querySelectorAll('#frames img').length === {FRAMES}")
    gallery = page.inner_text("#frames")
    assert "0.00 s" in gallery and gallery.count(" s") >= FRAMES

    # the question asked is in the chat, as the user's message
    assert example in page.locator("#chat .user").first.inner_text()

    elsewhere = [u for u in requested if not u.startswith(("http://127.0.0.1:", "data:", "blob:"))]
    assert requested and elsewhere == [], "the page loads nothing from other hosts"


def _screenshot(page, folder: Path, name: str, full_page: bool = False) -> None:
    """The page as it is, into `folder`; with UPDATE_SCREENSHOT=1 also into assets/ (the README's pictures)."""
    shot = folder / name
    page.screenshot(path=str(shot), full_page=full_page)
    assert shot.stat().st_size < 1_000_000
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        shutil.copy(shot, ROOT / "assets" / name)


def _camera_pair(question_type: str) -> dict:
    return {"Question": "Which way does the camera move?", "Answer": "It pans to the right.",
            "Correct Option": "To the right", "Wrong Options": ["To the left", "Up", "It does not move"]}


@pytest.fixture
def synth_app_url(tiny_model, tmp_path, scripted_qa):
    config = AppConfig(model=str(tiny_model.model_id), quant="fp32", device="cpu", frames=8, max_new_tokens=8,
                       port=free_port(), output_dir=tmp_path / "data")
    engine = Engine(tiny_model, config)
    scripted_qa(engine, _camera_pair)
    chat = VideoChat(engine)
    demo = build_ui(chat, extra_tabs=[synth_tab])
    launch(demo, config, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{config.port}/", config.output_dir
    finally:
        chat.forget_session(None)
        demo.close()


def _js_value(selector: str) -> str:
    return f"document.querySelector({selector!r}).value"


def test_synthetic_qa_from_the_ask_tabs_video_generate_review_and_save(synth_app_url, page):
    url, out_dir = synth_app_url
    page.goto(url)
    page.wait_for_selector("#ask")
    page.set_input_files("#video input[type=file]", str(ROOT / "assets" / "pan.mp4"))
    page.wait_for_function("document.querySelector('#video-info').innerText.includes('8.00 s')")

    # the synthesis tab says it will use the video dropped into the Ask tab
    page.get_by_role("tab", name="Generate synthetic QA").click()
    page.wait_for_function("document.querySelector('#synth-source').innerText.includes('pan.mp4')", timeout=10_000)
    assert "the Ask tab's" in page.inner_text("#synth-source")

    # keep it short: one question type (Camera Direction), small token limits
    for label in page.locator("#synth-types label").all():
        if label.inner_text().strip() != "Camera Direction":
            label.click()
    page.locator("#synth-settings").get_by_text("Settings").first.click()
    for slider, value in (("#synth-desc-tokens", "16"), ("#synth-qa-tokens", "32")):
        box = page.locator(f"{slider} input[type=number]")
        box.fill(value)
        box.press("Enter")

    page.click("#synth-generate")
    # a progress line per model call, the three levels as they are written, then the table
    progress = _js_value("#synth-progress textarea")
    page.wait_for_function(f"{progress}.startsWith('step')", timeout=30_000)
    page.wait_for_function(f"{progress}.startsWith('Done')", timeout=120_000)
    assert page.input_value("#synth-progress textarea").startswith("Done: 1 QA pairs")
    assert page.input_value("#synth-level1 textarea").startswith("[0-8 s] ")  # pan.mp4: one 8 s window
    assert page.input_value("#synth-level2 textarea").startswith("[0-8 s] ")
    assert page.input_value("#synth-level3 textarea").strip()
    page.wait_for_function("document.querySelector('#synth-table').innerText.includes('It pans to the right.')",
                           timeout=10_000)
    assert "Camera Direction" in page.inner_text("#synth-table")

    page.click("#synth-save")
    page.wait_for_function("document.querySelector('#synth-saved').innerText.includes('Saved to')", timeout=15_000)
    saved = page.inner_text("#synth-saved")
    assert "1 caption, 1 open-ended, 1 multiple-choice" in saved
    lines = [json.loads(line) for path in sorted(out_dir.glob("*.jsonl")) for line in path.read_text().splitlines()]
    records = {r["task"]: r for r in lines}
    assert len(lines) == 3 and sorted(records) == ["cap", "mc", "oe"], lines
    assert {r["video"] for r in lines} == {"pan.mp4"}, "the data is about the Ask tab's video"
    assert records["oe"]["conversations"][1]["value"] == "It pans to the right."
    _screenshot(page, out_dir, "screenshot-synth.png")

    # a video uploaded here takes over
    page.set_input_files("#synth-video input[type=file]", str(ROOT / "assets" / "square.mp4"))
    page.wait_for_function("document.querySelector('#synth-source').innerText.includes('square.mp4')",
                           timeout=10_000)
    assert "uploaded here" in page.inner_text("#synth-source")


@pytest.fixture
def workbench_url(tiny_model):
    config = AppConfig(model=str(tiny_model.model_id), quant="fp32", device="cpu", frames=8, max_new_tokens=8,
                       port=free_port())
    chat = VideoChat(Engine(tiny_model, config))
    demo = build_ui(chat)
    launch(demo, config, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{config.port}/"
    finally:
        chat.forget_session(None)
        demo.close()


def _ask_in_page(page, question: str, waits_for: str) -> None:
    page.fill("#question textarea", question)
    page.click("#ask")
    try:
        page.wait_for_function(f"document.querySelector('#provenance').innerText.includes({waits_for!r})",
                               timeout=60_000)
    except Exception:
        print("PROV", page.inner_text("#provenance"), "STATUS", page.inner_text("#status"))
        raise


def _set_number(page, slider: str, value: str) -> None:
    """Type a value into a slider's number box as a person does (type, Enter, leave the box) until the
    slider shows it: a box re-rendered by the answer's last updates can drop the first typing."""
    box, shown = page.locator(f"{slider} input[type=number]"), f"document.querySelector('{slider} input[type=range]')"
    timeout_error = pytest.importorskip("playwright.sync_api").TimeoutError
    for _ in range(3):
        box.fill(value)
        box.press("Enter")
        box.blur()
        try:
            page.wait_for_function(f"{shown}.value === {value!r}", timeout=10_000)
            return
        except timeout_error:
            continue
    page.wait_for_function(f"{shown}.value === {value!r}", timeout=10_000)


def test_history_survives_a_frames_change_and_downloads_with_provenance(workbench_url, page):
    page.goto(workbench_url)
    page.wait_for_selector("#ask")
    page.set_input_files("#video input[type=file]", str(ROOT / "assets" / "pan.mp4"))
    page.wait_for_function("document.querySelector('#video-info').innerText.includes('8.00 s')")
    _ask_in_page(page, "What happens first?", "8 frames")
    assert "pan.mp4" in page.inner_text("#provenance") and "seed" in page.inner_text("#provenance")

    # more frames: a new conversation on screen, the old one kept in the history
    page.get_by_text("Settings").first.click()
    _set_number(page, "#frame-count", "10")
    _ask_in_page(page, "And with more frames?", "10 frames")
    page.wait_for_function("document.querySelectorAll('#chat .user').length === 1")
    assert "And with more frames?" in page.inner_text("#chat")
    page.locator("#history-panel button").first.click()  # open the accordion
    page.wait_for_function("document.querySelector('#history')?.innerText.includes('10 frames')", timeout=30_000)
    history = page.inner_text("#history")
    assert "8 frames" in history and "10 frames" in history and history.count("pan.mp4") == 2

    # the whole history as JSON: both conversations, each answer with its provenance
    page.get_by_label("Whole history").check()
    page.click("#export-json")
    link = page.locator("#export-file a").first
    link.wait_for(timeout=30_000)
    exported = json.loads(page.request.get(link.get_attribute("href")).text())
    conversations = exported["conversations"]
    assert [[t["question"] for t in c["turns"]] for c in conversations] == [["What happens first?"],
                                                                           ["And with more frames?"]]
    assert [c["turns"][0]["provenance"]["settings"]["frames"] for c in conversations] == [8, 10]
    assert all(c["video"]["name"] == "pan.mp4" and len(c["video"]["sha256"]) == 64 for c in conversations)


ERROR_MARKS = "document.querySelectorAll('.wrap span.error, .wrap .error').length"


def _visible_error_marks(page) -> list[str]:
    """Gradio's red "Error" marks that a person would see: (the id of the component they sit on): text."""
    return page.evaluate("[...document.querySelectorAll('.wrap span.error, .wrap .error')]"
                         ".filter(e => e.checkVisibility())"
                         ".map(e => (e.closest('[id]') || {}).id + ': ' + e.innerText)")


def _interactive(page, elem_id: str) -> bool:
    return page.locator(f"#{elem_id}").is_enabled()


def test_ask_is_live_only_with_a_usable_video_and_a_question(workbench_url, page, tmp_path):
    page.goto(workbench_url)
    page.wait_for_selector("#ask")
    # nothing to ask about yet: Ask and Stop are both off
    page.wait_for_function("document.querySelector('#ask').disabled && document.querySelector('#stop').disabled")

    # an unusable file: a message, Ask stays off
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video\n" * 20)
    page.set_input_files("#video input[type=file]", str(fake))
    page.wait_for_function("document.querySelector('#video-info').innerText.includes('Not a usable video')")
    assert not _interactive(page, "ask")
    assert _visible_error_marks(page) == [], "no red error marks over the page, the player's own included"

    # a real video and a question: Ask on; an emptied question: Ask off again
    page.click("#clear")
    page.wait_for_selector("#video input[type=file]", state="attached")
    page.set_input_files("#video input[type=file]", str(ROOT / "assets" / "pan.mp4"))
    page.wait_for_function("document.querySelector('#video-info').innerText.includes('8.00 s')")
    page.wait_for_function("!document.querySelector('#ask').disabled")
    page.fill("#question textarea", "")
    page.wait_for_function("document.querySelector('#ask').disabled")


def test_enter_sends_shift_enter_adds_a_line_and_an_empty_question_is_one_toast(workbench_url, page):
    page.goto(workbench_url)
    page.wait_for_selector("#ask")
    page.set_input_files("#video input[type=file]", str(ROOT / "assets" / "pan.mp4"))
    page.wait_for_function("!document.querySelector('#ask').disabled")

    # Shift+Enter adds a line, Enter sends; Stop is live only while the answer runs
    page.fill("#question textarea", "")
    page.click("#question textarea")
    page.keyboard.type("First line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    assert page.input_value("#question textarea") == "First line\nsecond line"
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#provenance').innerText.includes('tok/s')", timeout=60_000)
    assert "second line" in page.locator("#chat .user").last.inner_text()
    page.wait_for_function("document.querySelector('#stop').disabled")

    # an empty question sent with Enter: one toast, the conversation and frames stay, no red error marks
    refusals = "[...document.querySelectorAll('.toast-item')].filter(t => t.innerText.includes('Type a question'))"
    page.fill("#question textarea", "")
    page.press("#question textarea", "Enter")
    page.wait_for_function(f"{refusals}.length > 0", timeout=30_000)
    page.wait_for_timeout(1000)  # let any second toast or error mark arrive before counting
    assert page.evaluate(f"{refusals}.length") == 1
    assert page.evaluate(f"{refusals}[0].innerText").count("Type a question") == 1, "one message, not a repeat count"
    assert page.evaluate(ERROR_MARKS) == 0
    assert page.locator("#chat .bot").count() == 1 and page.locator("#frames img").count() == 8


def test_one_trim_control_gradios_video_editor_is_hidden(workbench_url, page):
    page.goto(workbench_url)
    page.set_input_files("#video input[type=file]", str(ROOT / "assets" / "pan.mp4"))
    page.wait_for_function("document.querySelector('#video-info').innerText.includes('8.00 s')")
    page.wait_for_selector("#video video", state="attached")
    editor = page.locator('#video button[aria-label="Trim video to selection"], '
                          '#video button[title="Trim video to selection"]')
    assert editor.count() >= 1, "Gradio still draws its editor's button (so this test checks something)"
    assert not any(editor.nth(i).is_visible() for i in range(editor.count()))
    assert page.locator("#start input").is_visible() and page.locator("#end input").is_visible()


def _generate_camera_pair(page, url: str) -> None:
    """The synthesis tab on pan.mp4 with one question type (Camera Direction) and small limits, to its table."""
    page.goto(url)
    page.wait_for_selector("#ask")
    page.set_input_files("#video input[type=file]", str(ROOT / "assets" / "pan.mp4"))
    page.wait_for_function("document.querySelector('#video-info').innerText.includes('8.00 s')")
    page.get_by_role("tab", name="Generate synthetic QA").click()
    page.wait_for_function("document.querySelector('#synth-source').innerText.includes('pan.mp4')", timeout=10_000)
    for label in page.locator("#synth-types label").all():
        if label.inner_text().strip() != "Camera Direction":
            label.click()
    page.locator("#synth-settings").get_by_text("Settings").first.click()
    for slider, value in (("#synth-desc-tokens", "16"), ("#synth-qa-tokens", "32")):
        box = page.locator(f"{slider} input[type=number]")
        box.fill(value)
        box.press("Enter")
    page.click("#synth-generate")
    page.wait_for_function(f"{_js_value('#synth-progress textarea')}.startsWith('Done')", timeout=120_000)
    page.wait_for_function("document.querySelector('#synth-table').innerText.includes('It pans to the right.')",
                           timeout=10_000)


def test_the_qa_table_shows_the_options_keeps_its_tick_box_in_view_and_says_what_an_edit_drops(synth_app_url, page):
    url, out_dir = synth_app_url
    _generate_camera_pair(page, url)
    # the options, one per line, the correct one marked, before any Save
    options = page.locator("#synth-table [data-testid=cell-0-4]")
    assert options.inner_text().splitlines() == ["A. It does not move", "B. To the right ✓", "C. To the left", "D. Up"]
    # every column in view at once (no sideways scroll hides the tick box), the answer not clipped
    table = page.locator("#synth-table .table-wrap").bounding_box()
    for col in range(5):
        cell = page.locator(f"#synth-table [data-testid=cell-0-{col}]").bounding_box()
        assert table["x"] <= cell["x"] and cell["x"] + cell["width"] <= table["x"] + table["width"] + 1, col
    answer = page.locator("#synth-table [data-testid=cell-0-3] .cell-wrap")
    assert answer.evaluate("e => e.scrollWidth <= e.clientWidth"), "the answer is clipped"

    # an edited answer that is none of the options: Save says which row lost its multiple-choice record
    cell = page.locator("#synth-table [data-testid=cell-0-3]")
    cell.dblclick()
    editor = cell.locator("textarea, input").first
    editor.wait_for(timeout=10_000)
    editor.fill("It pans to the left.")
    editor.press("Enter")
    page.wait_for_function("document.querySelector('#synth-table [data-testid=cell-0-3]').innerText"
                           ".includes('It pans to the left.')", timeout=10_000)
    page.click("#synth-save")
    page.wait_for_function("document.querySelector('#synth-saved').innerText.includes('Saved to')", timeout=15_000)
    saved = page.inner_text("#synth-saved")
    assert "1 caption, 1 open-ended, 0 multiple-choice" in saved
    assert ("row 1 (Camera Direction): no multiple-choice record: the answer was edited and is none of the options"
            in saved)


def test_a_raw_h264_stream_is_accepted_by_the_page_and_its_assumed_rate_shown(workbench_url, page, tmp_path):
    """Issue 18: raw H.264 (no container) is a usable video; the page says its frame rate was assumed."""
    from raw_h264 import make_raw_h264

    raw = make_raw_h264(tmp_path / "camera.h264", frames=50, fps=10, vui_timing=False)
    page.goto(workbench_url)
    page.wait_for_selector("#ask")
    # The upload box (Gradio's gr.Video) takes only files the browser types video/*: a browser that knows no
    # type for .h264 (this Debian's mime.types lists none) refuses it before upload; one that does sends it.
    page.set_input_files("#video input[type=file]", files=[{"name": raw.name, "mimeType": "video/h264",
                                                            "buffer": raw.read_bytes()}])
    page.wait_for_function("document.querySelector('#video-info').innerText.includes('frames')", timeout=30_000)
    header, note = page.inner_text("#video-info").strip().split("\n", 1)
    assert header == "2.00 s · 25 fps · 64×48 · 50 frames · frame rate assumed 25 fps: raw stream without timing"
    assert note.strip().startswith("No preview: browsers cannot play camera.h264 (a raw H.264 stream"), note
    _ask_in_page(page, "What happens?", "frame rate assumed 25 fps")


# --- temporal grounding and "what the model sees" (web/player.py, frame_inspector.py, model_view.py) -------

TOLD_TIMES = " The turn is at 3.2 s, and again at 0:05."  # appended to the model's own answer


@pytest.fixture
def grounding_url(tiny_model):
    """The app over the tiny model, each answer ending with TOLD_TIMES (the random model never says a time)."""
    config = AppConfig(model=str(tiny_model.model_id), quant="fp32", device="cpu", frames=8, max_new_tokens=8,
                       port=free_port())
    engine = Engine(tiny_model, config)
    stream = engine.stream

    def telling_times(*args, **kwargs):
        yield from stream(*args, **kwargs)
        yield TOLD_TIMES

    engine.stream = telling_times
    chat = VideoChat(engine)
    demo = build_ui(chat)
    launch(demo, config, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{config.port}/"
    finally:
        chat.forget_session(None)
        demo.close()


@pytest.fixture
def batch_url(tiny_model):
    config = AppConfig(model=str(tiny_model.model_id), quant="fp32", device="cpu", frames=8, max_new_tokens=6,
                       port=free_port())
    chat = VideoChat(Engine(tiny_model, config))
    demo = build_ui(chat, extra_tabs=[batch_tab])
    launch(demo, config, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{config.port}/"
    finally:
        chat.forget_session(None)
        demo.close()


PLAYER_TIME = "document.querySelector('#video video').currentTime"


def _wait_for_player_at(page, seconds: float) -> None:
    try:
        page.wait_for_function(f"Math.abs({PLAYER_TIME} - {seconds}) < 0.02", timeout=20_000)
    except Exception:
        print("PLAYER AT", page.evaluate(PLAYER_TIME), "WANTED", seconds)
        raise


def test_answer_times_and_gallery_frames_seek_the_player_and_the_inspector_steps(grounding_url, page):
    page.goto(grounding_url)
    page.wait_for_selector("#ask")
    page.set_input_files("#video input[type=file]", str(ROOT / "assets" / "pan.mp4"))
    page.wait_for_function("document.querySelector('#video-info').innerText.includes('8.00 s')")
    page.wait_for_selector("#video video", state="attached")
    page.wait_for_function("document.querySelector('#video video').readyState >= 1", timeout=30_000)
    _ask_in_page(page, "When does the camera turn?", "8 frames")

    # the times in the answer are links; each moves the player to its second
    page.wait_for_selector('#chat .bot a[href="#t=3.2"]', timeout=30_000)
    page.click('#chat .bot a[href="#t=3.2"]')
    _wait_for_player_at(page, 3.2)
    assert "0:05" in page.inner_text('#chat .bot a[href="#t=5"]')
    page.click('#chat .bot a[href="#t=5"]')
    _wait_for_player_at(page, 5)
    assert len(page.context.pages) == 1, "a time link seeks; it opens no tab"

    # a frame of the gallery: large in the inspector with its time, and the player there
    page.wait_for_function("document.querySelectorAll('#frames img').length === 8")
    captions = [float(c.split()[0]) for c in page.locator("#frames .caption-label").all_inner_texts()]
    assert len(captions) == 8 and captions == sorted(captions), captions
    page.locator("#frames img").nth(2).click()
    page.wait_for_function("document.querySelector('#inspector-time').innerText.includes('Frame 3 of 8')",
                           timeout=20_000)
    page.wait_for_selector("#inspector-image img")
    large = page.locator("#inspector-image img").bounding_box()
    thumbnail = page.locator("#frames img").nth(2).bounding_box()
    assert large["height"] > 2.5 * thumbnail["height"], "the inspector shows the frame large"
    _wait_for_player_at(page, captions[2])
    assert f"{captions[2]:.2f} s" in page.inner_text("#inspector-time")

    # next and previous step through the frames, the player following
    page.click("#inspector-next")
    page.wait_for_function("document.querySelector('#inspector-time').innerText.includes('Frame 4 of 8')",
                           timeout=20_000)
    _wait_for_player_at(page, captions[3])
    page.click("#inspector-prev")
    page.click("#inspector-prev")
    page.wait_for_function("document.querySelector('#inspector-time').innerText.includes('Frame 2 of 8')",
                           timeout=20_000)
    _wait_for_player_at(page, captions[1])
    page.click("#inspector-prev")
    page.wait_for_function("document.querySelector('#inspector-time').innerText.includes('Frame 1 of 8')",
                           timeout=20_000)
    page.wait_for_function("document.querySelector('#inspector-prev').disabled", timeout=20_000)
    _wait_for_player_at(page, captions[0])


def test_the_trimmed_range_is_marked_under_the_player(grounding_url, page):
    page.goto(grounding_url)
    page.wait_for_selector("#ask")
    page.set_input_files("#video input[type=file]", str(ROOT / "assets" / "pan.mp4"))
    page.wait_for_function("document.querySelector('#trim-range')?.innerText.includes('the whole video')",
                           timeout=30_000)
    for box, value in (("#start input", "2"), ("#end input", "6")):
        page.fill(box, value)
        page.press(box, "Enter")
    page.wait_for_function("document.querySelector('#trim-range')?.dataset.end === '6' && "
                           "document.querySelector('#trim-range').dataset.start === '2'", timeout=30_000)
    assert "reads 2.00–6.00 s of the 8.00 s video" in page.inner_text("#trim-range")
    kept = page.locator("#trim-range .trim-kept").bounding_box()
    bar = page.locator("#trim-range .trim-kept").locator("..").bounding_box()
    assert kept["x"] - bar["x"] == pytest.approx(bar["width"] * 2 / 8, abs=2)
    assert kept["width"] == pytest.approx(bar["width"] * 4 / 8, abs=2)


def test_what_the_model_sees_shows_the_prompt_with_its_time_instruction(grounding_url, page):
    page.goto(grounding_url)
    page.wait_for_selector("#ask")
    page.set_input_files("#video input[type=file]", str(ROOT / "assets" / "pan.mp4"))
    page.wait_for_function("document.querySelector('#video-info').innerText.includes('8.00 s')")
    page.fill("#question textarea", "Where does the camera go?")
    page.locator("#model-view-panel").get_by_text("What the model sees").first.click()
    prompt = _js_value("#model-prompt textarea")
    page.wait_for_function(f"{prompt}.includes('Where does the camera go?')", timeout=30_000)
    text = page.input_value("#model-prompt textarea")
    assert "The video lasts for 8.00 seconds, and 8 frames are uniformly sampled from it." in text
    assert text.index("<image>") < text.index("The video lasts") < text.index("Where does the camera go?")
    assert "Visual tokens" in page.inner_text("#model-view") and "pool mode" in page.inner_text("#model-view")

    # a change of frames shows at once in the prompt's time instruction
    page.get_by_text("Settings").first.click()
    _set_number(page, "#frame-count", "10")
    page.wait_for_function(f"{prompt}.includes('10 frames are uniformly sampled')", timeout=30_000)
    assert " 10 frames × " in page.inner_text("#model-view")

    # after an answer: the next question's prompt, the conversation so far in it
    _ask_in_page(page, "Where does the camera go?", "10 frames")
    page.fill("#question textarea", "And after that?")
    page.wait_for_function(f"{prompt}.includes('And after that?')", timeout=30_000)
    page.wait_for_function("document.querySelector('#model-view').innerText.includes('after its 1 turn(s)')",
                           timeout=30_000)
    text = page.input_value("#model-prompt textarea")
    assert text.index("Where does the camera go?") < text.index("The turn is at 3.2 s") < text.index("And after that?")


def test_a_video_the_browser_cannot_play_is_said_plainly_and_the_model_still_reads_it(grounding_url, page, tmp_path):
    from llava_video_app.sample_videos import make_video

    avi = make_video(tmp_path / "clip.avi", seconds=3, fps=10, size=(64, 48), codec="mpeg4")
    page.goto(grounding_url)
    page.wait_for_selector("#ask")
    page.set_input_files("#video input[type=file]", str(avi))
    page.wait_for_function("document.querySelector('#video-info').innerText.includes('No preview')", timeout=30_000)
    assert "the model reads it all the same" in page.inner_text("#video-info")
    # the browser's own verdict: the player is marked, and Gradio's red mark for it is not shown
    page.wait_for_function("document.querySelector('#video').classList.contains('no-preview')", timeout=30_000)
    assert _visible_error_marks(page) == []
    assert not page.locator("#video video").is_visible()
    _ask_in_page(page, "What moves?", "8 frames")
    page.wait_for_function("document.querySelectorAll('#frames img').length === 8")
    assert _visible_error_marks(page) == []


def test_ask_again_with_fewer_frames_side_by_side_and_into_the_history(workbench_url, page, tmp_path):
    page.goto(workbench_url)
    page.wait_for_selector("#ask")
    page.set_input_files("#video input[type=file]", str(ROOT / "assets" / "pan.mp4"))
    page.wait_for_function("document.querySelector('#video-info').innerText.includes('8.00 s')")
    _ask_in_page(page, "What happens first?", "8 frames")

    # "Ask again with…": pick fewer frames, compare; two columns, the differing setting marked in each
    page.locator("#compare-panel button").first.click()  # open the accordion
    page.click("#compare-variants input")
    page.get_by_role("option", name="frames=2", exact=True).click()
    page.click("#compare")
    columns = "document.querySelectorAll('#compare-result .compare-column')"
    page.wait_for_function(f"{columns}.length === 2 && "
                           "document.querySelectorAll('#compare-result .compare-reused').length === 2",
                           timeout=60_000)
    marks = page.locator("#compare-result mark").all_inner_texts()
    assert "frames: 8" in marks and "frames: 2" in marks
    first, second = (page.locator("#compare-result .compare-column").nth(i) for i in range(2))
    assert "as asked" in first.inner_text() and "frames=2" in second.inner_text()
    assert "reused frames, features" in first.inner_text(), "the answer's own clip, from the cache"
    assert page.locator("#compare-result .compare-answer").count() == 2
    assert page.evaluate(ERROR_MARKS) == 0
    page.wait_for_function("document.querySelector('#stop').disabled")

    # the conversation on screen stays; both answers are in the history
    assert page.locator("#chat .user").count() == 1
    page.locator("#history-panel button").first.click()
    page.wait_for_function("document.querySelector('#history')?.innerText.includes('2 frames')", timeout=30_000)
    assert page.inner_text("#history").count("pan.mp4") == 3
    page.locator("#frames img").first.click()  # the frame inspector, for the README's picture of the workbench
    page.wait_for_function("document.querySelector('#inspector-time')?.innerText.includes('Frame 1 of')",
                           timeout=30_000)
    _screenshot(page, tmp_path, "screenshot.png", full_page=True)


def test_batch_two_uploaded_videos_fill_the_table_and_download_as_jsonl_and_csv(batch_url, page, tmp_path):
    from llava_video_app.sample_videos import make_video

    clips = [make_video(tmp_path / "left.mp4", seconds=3, fps=4, size=(64, 48)),
             make_video(tmp_path / "right.mp4", seconds=4, fps=4, size=(48, 64))]
    page.goto(batch_url)
    page.get_by_role("tab", name="Batch").click()
    page.set_input_files("#batch-videos input[type=file]", [str(c) for c in clips])
    uploaded = "document.querySelector('#batch-videos').innerText"  # a name shows split, "left" then ".mp4"
    page.wait_for_function(f"{uploaded}.includes('left') && {uploaded}.includes('right')", timeout=30_000)
    page.fill("#batch-question textarea", "What happens?")
    page.click("#batch-run")
    page.wait_for_function("document.querySelector('#batch-progress textarea').value.startsWith('Done')",
                           timeout=120_000)
    assert page.input_value("#batch-progress textarea") == "Done: 2 answered."
    table = page.inner_text("#batch-table")
    assert "left.mp4" in table and "right.mp4" in table and table.count("What happens?") == 2

    links = page.locator("#batch-files a")
    links.nth(1).wait_for(timeout=30_000)
    hrefs = {Path(href).suffix: href for href in (links.nth(i).get_attribute("href") for i in range(2))}
    records = [json.loads(line) for line in page.request.get(hrefs[".jsonl"]).text().splitlines()]
    assert [r["video"] for r in records] == ["left.mp4", "right.mp4"]
    assert all(r["answer"] and r["provenance"]["settings"]["frames"] == 8 for r in records)
    rows = page.request.get(hrefs[".csv"]).text().splitlines()
    assert rows[0].startswith("video,question,answer") and len(rows) == 3

