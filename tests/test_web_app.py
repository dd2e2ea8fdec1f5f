"""The page and its launch (web/app.py): the API's wiring, one generation at a time, and the one
set of flags behind `python app.py` and `llava-video app`."""

import pytest

from llava_video_app.config import AppConfig
from llava_video_app.web.app import build_ui, launch
from llava_video_app.web.serving import MODEL_EVENT_WORKERS, MODEL_EVENTS


def test_build_ui_wires_the_api_and_requests_that_take_the_gpu_in_turns(tiny_engine):
    demo = build_ui(tiny_engine)
    fns = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    for name in ("caption", "ask", "ask_type", "ask_record", "compare"):
        assert fns[name].api_visibility == "public"
        # several at once read their videos; the model runs one call at a time (gpu_queue, tests/test_gpu_queue.py)
        assert fns[name].concurrency_id == MODEL_EVENTS and fns[name].concurrency_limit == MODEL_EVENT_WORKERS > 1
    model_events = [fn for fn in demo.fns.values() if fn.concurrency_id == MODEL_EVENTS]
    assert len(model_events) == 9  # the five endpoints and the UI's Ask, regenerate, edit and Compare
    api = demo.get_api_info()["named_endpoints"]
    assert [p["parameter_name"] for p in api["/ask"]["parameters"]][:2] == ["video", "question"]
    assert [p["parameter_name"] for p in api["/caption"]["parameters"]][0] == "video"
    assert all(p["parameter_has_default"] for p in api["/ask"]["parameters"][2:])
    assert not any(p["parameter_has_default"] for p in api["/ask_type"]["parameters"][:2])
    assert set(api) == {"/caption", "/ask", "/ask_type", "/ask_record", "/compare"}, \
        "UI events stay out of the public API"


def _app_config(monkeypatch, argv, command=("app",)):
    """The AppConfig that `python app.py ARGV` (command=()) or `llava-video app ARGV` would serve with."""
    from typer.testing import CliRunner

    from llava_video_app import cli
    from llava_video_app.web import app as web_app

    started = []
    monkeypatch.setattr(web_app, "run_app", started.append)
    if command:
        result = CliRunner().invoke(cli.app, [*command, *argv])
        assert result.exit_code == 0, result.output
    else:
        with pytest.raises(SystemExit) as exited:
            cli.app_main(argv)
        assert exited.value.code == 0
    (config,) = started
    return config


@pytest.mark.parametrize("command", [(), ("app",)], ids=["python app.py", "llava-video app"])
def test_command_line_flags(monkeypatch, command):
    monkeypatch.setenv("LLAVA_VIDEO_FRAMES", "32")
    config = _app_config(monkeypatch, ["--model", "/m", "--quant", "fp32", "--device", "cpu", "--port", "7999",
                                       "--frames", "16", "--output-dir", "out", "--mcp-server"], command)
    assert (config.model, config.quant, config.device, config.port, config.frames) == ("/m", "fp32", "cpu", 7999, 16)
    assert config.mcp_server and str(config.output_dir) == "out"
    assert config.host == "127.0.0.1" and not config.share, "local only unless asked"
    assert _app_config(monkeypatch, [], command).frames == 32, "the environment fills what flags leave out"
    assert _app_config(monkeypatch, ["--share", "--host", "0.0.0.0"], command).share


def test_a_bad_flag_is_one_line_and_a_non_zero_exit(monkeypatch, capsys):
    from llava_video_app import cli

    with pytest.raises(SystemExit) as exited:
        cli.app_main(["--quant", "int3"])
    assert exited.value.code == 1 and "error: --quant must be one of 4bit, int4, bf16, fp16, fp32" in capsys.readouterr().err


def test_mcp_server_without_its_extra_is_a_clear_message(tiny_engine):
    import importlib.util

    if importlib.util.find_spec("mcp") is not None:
        pytest.skip("gradio's mcp extra is installed here")
    with pytest.raises(SystemExit, match=r"gradio\[mcp\]"):
        launch(build_ui(tiny_engine), AppConfig(mcp_server=True), prevent_thread_lock=True)


def test_python_app_py_whose_model_cannot_load_says_so_and_exits_non_zero(tmp_path):
    """A newcomer without a GPU or the Hub gets one line and exit code 1, not a page that can never answer."""
    import subprocess
    import sys

    from app_process import ROOT, free_port

    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    result = subprocess.run([sys.executable, "app.py", "--model", str(not_a_model), "--device", "cpu",
                             "--port", str(free_port())], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "error: the model could not be loaded: " in result.stderr and "not-a-model" in result.stderr
    assert "Traceback" not in result.stderr
