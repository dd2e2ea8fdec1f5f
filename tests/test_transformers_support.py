"""One supported transformers range: inside it the model runs; outside it every way in (CLI, app, engine)
stops at start-up with one line naming the version found and the range needed."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from llava_video_app import cli, transformers_support
from llava_video_app.transformers_support import (
    SPEC,
    UnsupportedTransformersError,
    check_transformers,
    installed_version,
    unsupported_reason,
)


@pytest.mark.parametrize("version", ["5.17.0", "5.17.2", "5.20.0", "5.24.0", "5.24.3"])
def test_versions_in_the_range_pass(version):
    assert unsupported_reason(version) is None
    check_transformers(version)


@pytest.mark.parametrize("version", ["5.16.9", "5.16.0", "4.57.1", "5.25.0", "5.25.0.dev0", "6.0.0", "not-a-version"])
def test_versions_outside_the_range_get_one_line_with_the_version_and_the_range(version):
    with pytest.raises(UnsupportedTransformersError) as err:
        check_transformers(version)
    message = str(err.value)
    assert f"transformers {version} is installed" in message and "5.17" in message and "5.24" in message
    assert SPEC in message and "\n" not in message


@pytest.fixture
def old_transformers(monkeypatch):
    monkeypatch.setattr(transformers_support, "installed_version", lambda: "5.16.0")


def test_the_cli_stops_before_loading_anything(old_transformers, tiny_checkpoint, sample_video, monkeypatch):
    from llava_video_app.model import LlavaVideoModel

    loads = []
    monkeypatch.setattr(LlavaVideoModel, "load", classmethod(lambda cls, *a, **k: loads.append(a)))
    flags = ["--model", str(tiny_checkpoint), "--quant", "fp32", "--device", "cpu", "--frames", "8"]
    for args in (["ask", str(sample_video), "What happens?", *flags], ["caption", str(sample_video), *flags],
                 ["app", "--model", str(tiny_checkpoint), "--device", "cpu", "--port", "1"]):
        result = CliRunner().invoke(cli.app, args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.strip().splitlines() == [f"error: {unsupported_reason('5.16.0')}"]
    assert loads == []


def test_the_engine_refuses_to_be_built(old_transformers, tiny_model):
    from llava_video_app.engine import Engine

    with pytest.raises(UnsupportedTransformersError, match="5.16.0"):
        Engine(tiny_model)


def test_the_cli_under_the_installed_transformers(tiny_checkpoint, sample_video):
    """For real, in whatever venv runs the tests: CI also runs this under a transformers below the range."""
    reason = unsupported_reason(installed_version())
    result = subprocess.run([sys.executable, "-m", "llava_video_app.cli", "ask", str(sample_video), "What happens?",
                             "--model", str(tiny_checkpoint), "--quant", "fp32", "--device", "cpu", "--frames", "4",
                             "--max-new-tokens", "2"], capture_output=True, text=True, timeout=600)
    if reason is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == f"error: {reason}"
    assert "Traceback" not in result.stderr


def test_torchs_notice_about_torchaos_enums_is_not_printed_but_other_pytree_warnings_are():
    """torch 2.14 logs two `... is an Enum subclass ... register_constant()` lines whenever torchao is imported,
    which transformers does on import when torchao is installed: every command started with them."""
    pytest.importorskip("torchao")
    script = ("import llava_video_app, logging\n"
              "from transformers import Qwen2ForCausalLM\n"
              "import torchao\n"
              "logging.getLogger('torch.utils._pytree').warning('%s still shows', 'a real warning')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "register_constant" not in result.stderr and "a real warning still shows" in result.stderr
