"""A hostile user's inputs, through the CLI and through the running app's API: `python app.py` on the
tiny checkpoint in a subprocess with no network (tests/no_network.py), driven by gradio_client, and
`llava-video ask` (in this process through typer's runner, as tests/test_cli.py does; a real
subprocess for the answer at the end).

The corpus is made here, once per module: a zero-byte file; mp4s truncated with the index at the
start and at the end; text, PNG and audio-only files named .mp4; one frame; 0.3 s; 2 hours at 64x64
(one frame every 2 s); 4K; vertical; variable frame rate; AV1, VP9 in webm and HEVC in mkv where
this ffmpeg encodes them; bytes overwritten mid-file; odd names (a leading dash, quotes, shell
characters, non-Latin letters). Then empty, blank and over-long questions and every out-of-range
setting. Every case asserts the message (the same from both interfaces) or the answer, and that the
next normal request is answered; at the end, the app's console holds one "refused:" line per
refused request and no traceback, and nothing tried to reach another host.

docs/reliability.md is the matrix these cases make, and says how to run them.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from typer.testing import CliRunner

from app_process import free_port, serving
from opened_files import OpenedFiles
from playlist_tricks import TRICKS, secret_video
from raw_h264 import make_raw_h264
from llava_video_app import cli
from llava_video_app.config import AppConfig
from llava_video_app.request import check_request
from llava_video_app.sample_videos import available_codecs, make_video

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

MAX_NEW_TOKENS = 4  # the app's default in this module: answers are gibberish anyway, keep them short
ANSWERED = "answered"
ONLY = "only a single video file (mp4/mov, mkv/webm, avi, mpeg-ts, mpeg-ps, flv, ogg or raw H.264) is accepted"
CODECS = available_codecs()


# --- the corpus -------------------------------------------------------------------------------------

def _encode(path: Path, codec: str, frames: list[np.ndarray], pts: list[int], time_base: Fraction, rate: int,
            options: dict[str, str] | None = None) -> Path:
    """Frames (RGB arrays) at the given presentation times (in `time_base` units), encoded with an
    ffmpeg encoder; `rate` is the nominal frame rate the stream states."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, options=options or {})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = time_base
        for image, stamp in zip(frames, pts):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = stamp, time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _grey_frames(count: int, width: int = 64, height: int = 48) -> list[np.ndarray]:
    return [np.full((height, width, 3), (i * 17) % 256, np.uint8) for i in range(count)]


def _variable_frame_rate(path: Path) -> Path:
    """Frames 33 ms apart, with a 250 ms gap before every 4th: no single frame rate describes it."""
    stamps = np.cumsum([0] + [250 if i % 4 == 0 else 33 for i in range(1, 40)]).tolist()
    return _encode(path, "libx264", _grey_frames(40), stamps, Fraction(1, 1000), 30, {"preset": "veryfast"})


def _hevc_mkv(path: Path) -> Path:
    return _encode(path, "libx265", _grey_frames(10), list(range(10)), Fraction(1, 10), 10,
                   {"preset": "ultrafast", "x265-params": "log-level=none"})


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _png(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (32, 32), "red").save(path, format="PNG")
    return path


def _truncated(path: Path, index_at_start: bool) -> Path:
    whole = make_video(path.with_name(f"whole-{path.name}"), seconds=4, fps=10, size=(64, 48), faststart=index_at_start)
    data = whole.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def _overwritten(path: Path) -> Path:
    """2 KB of random bytes over the middle of a valid mp4."""
    whole = make_video(path.with_name("whole-overwritten.mp4"), seconds=4, fps=10, size=(160, 120), pattern="pan")
    data = bytearray(whole.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 2048] = np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def _have_encoder(name: str) -> bool:
    try:
        return name in av.codecs_available and bool(av.Codec(name, "w"))
    except Exception:
        return False


# file name -> (how to make it, what both interfaces say: ANSWERED or the message after the file name)
CORPUS: dict[str, tuple] = {
    "empty.mp4": (lambda p: (p.write_bytes(b""), p)[1], "empty.mp4 is empty (0 bytes)"),
    "truncated-index-first.mp4": (lambda p: _truncated(p, True), re.compile(
        r"truncated-index-first\.mp4 is damaged or truncated: frame \d+ of 40 is not in the file")),
    "truncated-index-last.mp4": (lambda p: _truncated(p, False),
                                 "truncated-index-last.mp4 looks like a video but is damaged or truncated "
                                 "(Invalid data found when processing input)"),
    "notes.mp4": (lambda p: (p.write_text("hello, I am a text file\n" * 50), p)[1],
                  f"notes.mp4 is a text file, not a video file: {ONLY}"),
    "picture.mp4": (_png, f"picture.mp4 is an image (png), not a video file: {ONLY}"),
    "random.mp4": (lambda p: (p.write_bytes(np.random.default_rng(1).bytes(4096)), p)[1],
                   "random.mp4 is not a video file (its contents are not mp4/mov, mkv/webm, avi, mpeg-ts, mpeg-ps, "
                   "flv, ogg or raw H.264)"),
    "sound.mp4": (_audio_only, "sound.mp4 has no video track (an audio-only or data file?)"),
    "one-frame.mp4": (lambda p: make_video(p, seconds=0.04, fps=25, size=(64, 48)), ANSWERED),
    "short.mp4": (lambda p: make_video(p, seconds=0.3, fps=10, size=(64, 48)), ANSWERED),
    "two-hours.mp4": (lambda p: make_video(p, seconds=7200, fps=0.5, size=(64, 64)), ANSWERED),
    "uhd.mp4": (lambda p: make_video(p, seconds=1, fps=3, size=(3840, 2160)), ANSWERED),
    "vertical.mp4": (lambda p: make_video(p, seconds=2, fps=10, size=(48, 96)), ANSWERED),
    "variable-rate.mp4": (_variable_frame_rate, ANSWERED),
    "raw.h264": (lambda p: make_raw_h264(p, frames=20), ANSWERED),  # no container: refused before issue 18
    "raw-cut.h264": (lambda p: (p.write_bytes(make_raw_h264(p, frames=20).read_bytes()[:40]), p)[1],
                     "raw-cut.h264 looks like a raw H.264 stream but is damaged or truncated (no complete picture "
                     "in it)"),
    "overwritten.mp4": (_overwritten, re.compile(r"overwritten\.mp4 is damaged: frame \d+ could not be decoded")),
    "-leading-dash.mp4": (lambda p: make_video(p, seconds=1, fps=10, size=(64, 48)), ANSWERED),
    "quotes 'and' \"spaces\" ünï 视频.mp4": (lambda p: make_video(p, seconds=1, fps=10, size=(64, 48)), ANSWERED),
    "semi;colon$(touch pwned)`id`.mp4": (lambda p: make_video(p, seconds=1, fps=10, size=(64, 48)), ANSWERED),
}
for _name, (_make, _message) in TRICKS.items():  # each names corpus/secrets/secret.mp4 (see the test)
    CORPUS[_name] = (lambda p, make=_make: make(p, secret_video(p.parent)), _message.format(name=_name))
if "av1" in CODECS:
    CORPUS["av1.webm"] = (lambda p: make_video(p, seconds=1, fps=5, size=(64, 48), codec="av1"), ANSWERED)
if "vp9" in CODECS:
    CORPUS["vp9.webm"] = (lambda p: make_video(p, seconds=1, fps=5, size=(64, 48), codec="vp9"), ANSWERED)
if _have_encoder("libx265"):
    CORPUS["hevc.mkv"] = (_hevc_mkv, ANSWERED)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    return {name: make(folder / name) for name, (make, _) in CORPUS.items()} | {"folder": folder}


@pytest.fixture(scope="module")
def normal_video(corpus) -> Path:
    return make_video(corpus["folder"] / "normal.mp4", seconds=6, fps=10, size=(160, 120))


# --- the app, as people run it, with no network ---------------------------------------------------

class RunningApp:
    def __init__(self, url: str, process: subprocess.Popen, console: Path, network_log: Path, output_dir: Path):
        self.url, self.process, self.console, self.network_log = url, process, console, network_log
        self.output_dir = output_dir
        self.client = Client(url, verbose=False)
        self.refused = 0  # requests this module expects the console to have a "refused:" line for

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


@pytest.fixture(scope="module")
def app(tiny_checkpoint, tmp_path_factory):
    """`python app.py` through tests/no_network.py, with the environment a user has: none of the
    variables that turn analytics, telemetry or the Hub off (the app must do it itself)."""
    folder = tmp_path_factory.mktemp("hostile-app")
    console, network_log = folder / "console.log", folder / "network.log"
    env = {k: v for k, v in os.environ.items()
           if k not in ("GRADIO_ANALYTICS_ENABLED", "HF_HUB_DISABLE_TELEMETRY", "HF_HUB_OFFLINE")}
    env.update(LLAVA_VIDEO_MAX_NEW_TOKENS=str(MAX_NEW_TOKENS), LLAVA_VIDEO_OUTPUT_DIR=str(folder / "outputs"))
    port = free_port()
    command = [sys.executable, str(ROOT / "tests" / "no_network.py"), str(network_log), "app.py", "--model",
               str(tiny_checkpoint), "--quant", "fp32", "--device", "cpu", "--port", str(port), "--frames", "8"]
    url = f"http://127.0.0.1:{port}/"
    with serving(command, url, env=env, log=console) as process:
        yield RunningApp(url, process, console, network_log, folder / "outputs")


def ask_api(app: RunningApp, video: Path, question: str = "What happens in the video?", **settings) -> str:
    return app.client.predict(handle_file(str(video)), question, api_name="/ask", **settings)


def refused_by_api(app: RunningApp, video: Path, question: str = "What happens?", **settings) -> str:
    """The message the API answers with, after checking the next normal request is answered."""
    with pytest.raises(AppError) as refused:
        ask_api(app, video, question, **settings)
    app.refused += 1
    return str(refused.value)


def still_answers(app: RunningApp, video: Path) -> None:
    answer = ask_api(app, video, "Still there?", max_new_tokens=2)
    assert isinstance(answer, str) and answer, "the next normal request is answered"


# --- the CLI ----------------------------------------------------------------------------------------

def cli_ask(tiny_checkpoint, *args, question="What happens in the video?", video=None):
    """`llava-video ask VIDEO QUESTION --model tiny ... ARGS` in this process: (exit code, stdout, stderr).
    The command must end through its own exit, never an exception (a traceback)."""
    positional = [] if video is None else ["--", str(video), question]  # "--": a name may start with "-"
    result = CliRunner().invoke(cli.app, ["ask", "--model", str(tiny_checkpoint), "--quant", "fp32", "--device",
                                          "cpu", "--frames", "8", "--max-new-tokens", str(MAX_NEW_TOKENS),
                                          *map(str, args), *positional])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stderr
    return result.exit_code, result.stdout, result.stderr


def cli_message(stderr: str, video: Path | None = None) -> str:
    """The CLI's one error line, less "error: " and with the video's path as its name (what the API,
    which sees an upload's temporary path, says)."""
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), stderr
    message = line[len("error: "):]
    return message.replace(str(video), video.name) if video is not None else message


def _expect(expected, message: str) -> None:
    if isinstance(expected, re.Pattern):
        assert expected.fullmatch(message), message
    else:
        assert message == expected


# --- the corpus through both interfaces --------------------------------------------------------------

@pytest.mark.parametrize("name", list(CORPUS))
def test_every_file_of_the_corpus_is_answered_or_refused_alike_by_the_api_and_the_cli(name, corpus, app,
                                                                                   normal_video, tiny_checkpoint):
    video, expected = corpus[name], CORPUS[name][1]
    if expected == ANSWERED:
        answer = ask_api(app, video)
        assert isinstance(answer, str) and answer
        code, stdout, stderr = cli_ask(tiny_checkpoint, video=video)
        assert code == 0 and stdout.strip(), stderr
        return
    still_answers(app, normal_video)  # warm: the first request's growth is not this file's
    with OpenedFiles(corpus["folder"] / "secrets") as opened:  # what the playlist tricks point at
        before = app.rss_mib()
        message = refused_by_api(app, video)
        grown = app.rss_mib() - before
        _expect(expected, message)
        code, _, stderr = cli_ask(tiny_checkpoint, video=video)
        assert code == 1 and cli_message(stderr, video) == message, "the same words from the CLI"
        assert opened.take() == [], "a file outside the input was opened"
    assert grown < 50, f"refusing {name} grew the server by {grown:.0f} MiB"
    still_answers(app, normal_video)


def test_odd_names_reach_no_shell_and_a_leading_dash_needs_only_a_separator(corpus, tiny_checkpoint, monkeypatch):
    monkeypatch.chdir(corpus["folder"])
    code, stdout, stderr = cli_ask(tiny_checkpoint, video=Path("-leading-dash.mp4"))  # as `ask -- -leading-dash.mp4`
    assert code == 0 and stdout.strip(), stderr
    result = CliRunner().invoke(cli.app, ["ask", "-leading-dash.mp4", "What?"])  # without "--": an unknown option
    assert result.exit_code == 2 and "No such option" in result.output
    assert not (corpus["folder"] / "pwned").exists() and not (ROOT / "pwned").exists()


# --- questions --------------------------------------------------------------------------------------

QUESTIONS = {
    "empty": ("", "the question is empty: type a question about the video"),
    "blank": ("  \n\t ", "the question is empty: type a question about the video"),
    "over the character limit": ("why " * 30_000, "the question is too long: 120,000 characters, 20,000 more than "
                                                  "the app's max_question_chars (100,000)"),
    "over the context": ("why " * 20_000, re.compile(
        r"the question is too long: 40,001 tokens \(79,999 characters\); with the video \(8 frames, \d+ tokens\) and "
        r"up to 4 new tokens this request needs [\d,]+ tokens, [\d,]+ more than the model's 32,768: shorten the "
        r"question by at least [\d,]+ tokens \(about [\d,]+ characters\)")),
    "with the video's placeholder": ("Compare <image> with the video.",
                                     "the question must not contain <image> (the app places the video itself)"),
}


@pytest.mark.parametrize("case", list(QUESTIONS))
def test_bad_questions_get_the_same_message_from_the_api_and_the_cli(case, app, normal_video, tiny_checkpoint):
    question, expected = QUESTIONS[case]
    message = refused_by_api(app, normal_video, question)
    _expect(expected, message)
    code, _, stderr = cli_ask(tiny_checkpoint, video=normal_video, question=question)
    assert code == 1 and cli_message(stderr, normal_video) == message
    still_answers(app, normal_video)


# --- settings -----------------------------------------------------------------------------------------

SETTINGS = [  # the API's keywords; the CLI's flags are the same names with dashes
    {"frames": 0}, {"frames": -3}, {"frames": 2.5}, {"frames": 129}, {"frames": 100_000},
    {"start": -1}, {"end": -1}, {"end": 0}, {"start": 3, "end": 2},
    {"max_new_tokens": 0}, {"max_new_tokens": 2.7}, {"max_new_tokens": 100_000},
    {"temperature": -1}, {"temperature": 1e6}, {"top_p": 0}, {"top_p": 1.5},
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_every_out_of_range_setting_is_refused_by_one_check_with_one_message(settings, app, normal_video,
                                                                             tiny_checkpoint):
    with pytest.raises(ValueError) as checked:  # the one check both interfaces call
        check_request(AppConfig(), **settings)
    message = refused_by_api(app, normal_video, **settings)
    assert message == str(checked.value)
    flags = [item for key, value in settings.items() for item in (f"--{key.replace('_', '-')}", value)]
    code, _, stderr = cli_ask(tiny_checkpoint, *flags, video=normal_video)
    assert code == 1 and cli_message(stderr) == message
    still_answers(app, normal_video)


def test_a_trim_outside_the_video_is_the_videos_to_refuse_in_the_same_words(app, normal_video, tiny_checkpoint):
    message = refused_by_api(app, normal_video, start=99)
    assert message == "normal.mp4: start (99.00s) is at or past the end of the video (6.00s)"
    code, _, stderr = cli_ask(tiny_checkpoint, "--start", 99, video=normal_video)
    assert code == 1 and cli_message(stderr, normal_video) == message
    still_answers(app, normal_video)


def test_frames_100000_is_refused_at_once_and_holds_no_memory(app, normal_video):
    """The request that took 12.9 s and kept 2.4 GB before: refused by the check, before any decoding
    (test_engine.py asserts the decoder is never called, also when max_frames allows 100,000)."""
    still_answers(app, normal_video)
    before = app.rss_mib()
    started = time.perf_counter()
    for _ in range(3):
        message = refused_by_api(app, normal_video, frames=100_000)
    elapsed = (time.perf_counter() - started) / 3
    grown = app.rss_mib() - before
    assert message == "frames must be a whole number from 1 to 128 (the app's max_frames), not 100000"
    print(f"frames=100000: refused in {elapsed:.2f} s per request (upload included), server memory "
          f"{before:.0f} -> {before + grown:.0f} MiB")
    assert grown < 50  # the time is printed, not asserted: a busy machine slows any request
    still_answers(app, normal_video)


# --- security -----------------------------------------------------------------------------------------

def test_the_app_listens_on_loopback_only(app):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = probe.getsockname()[0]
        except OSError:
            pytest.skip("this machine has no network interface but loopback")
    if address.startswith("127."):
        pytest.skip("this machine has no address but loopback")
    port = int(app.url.rsplit(":", 1)[1].strip("/"))
    with socket.socket() as other, pytest.raises(OSError):
        other.settimeout(2)
        other.connect((address, port))


def test_the_file_route_serves_no_file_the_app_did_not_make(app, normal_video):
    api = app.url + "gradio_api/"
    still_answers(app, normal_video)  # the output folder and Gradio's cache have files in them now
    for path in ("/etc/hostname", str(ROOT / "app.py"), "app.py", str(app.console), "../../../../etc/passwd",
                 "%2e%2e/%2e%2e/%2e%2e/etc/passwd", str(app.output_dir)):
        response = httpx.get(f"{api}file={path}")
        assert response.status_code in (403, 404), (path, response.status_code)


def test_an_api_call_cannot_name_a_server_file_instead_of_uploading_one(app, normal_video):
    """gradio_client uploads; a forged call names /etc/hostname as the video. Gradio refuses it while
    preprocessing (before our handler), with its own message (and its own traceback on the console)."""
    api = app.url + "gradio_api/"
    forged = {"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}
    event = httpx.post(f"{api}call/ask", json={"data": [forged, "What?", None, None, None, None, None, None, None]}).json()
    with httpx.stream("GET", f"{api}call/ask/{event['event_id']}", timeout=60) as stream:
        reply = stream.read().decode()
    assert "event: error" in reply and "not uploaded by a user" in reply
    still_answers(app, normal_video)


def test_no_pickle_is_ever_loaded_and_no_remote_code_runs():
    """Weights come from safetensors only (checkpoint.py refuses a folder without them); nothing in
    the package unpickles or runs a checkpoint's code."""
    forbidden = re.compile(r"pickle\.loads?\(|torch\.load\(|trust_remote_code\s*=\s*True|weights_only\s*=\s*False"
                           r"|\.from_pretrained\([^)]*use_safetensors\s*=\s*False")
    offenders = [f"{path.relative_to(ROOT)}:{n}" for path in sorted((ROOT / "llava_video_app").rglob("*.py"))
                 for n, line in enumerate(path.read_text().splitlines(), 1) if forbidden.search(line)]
    assert offenders == []


def test_the_no_network_guard_catches_a_call_home(tmp_path):
    """What makes the next test able to fail: with analytics on, Gradio's version check is caught."""
    log = tmp_path / "network.log"
    script = tmp_path / "call_home.py"
    script.write_text("import gradio.analytics as analytics\nanalytics.version_check()\n")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "True"}
    subprocess.run([sys.executable, str(ROOT / "tests" / "no_network.py"), str(log), str(script)], env=env,
                   check=True, timeout=120, capture_output=True)
    assert "getaddrinfo api.gradio.app" in log.read_text()


def test_nothing_called_home_and_the_console_has_one_line_per_refusal_and_no_traceback(app, normal_video):
    """Last in the module: the whole run's console and network log."""
    still_answers(app, normal_video)
    assert app.network_log.read_text() == "", "start-up and answering tried to reach another host"
    console = app.console.read_text()
    forged_path = "Cannot move /etc/hostname to the gradio cache dir"  # Gradio's own traceback (see above)
    tracebacks = [block for block in console.split("Traceback (most recent call last):")[1:]
                  if forged_path not in block]
    assert tracebacks == [], console[-4000:]
    assert console.count("\nrefused: ") >= app.refused
