"""The README's two first commands: both in a virtual environment, which a stock Debian/Ubuntu Python
requires (PEP 668: its pip refuses to install outside one); .ci/run runs the test command exactly."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = "python3 -m venv .venv && . .venv/bin/activate && "


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_the_first_two_commands_install_into_a_virtual_environment():
    run_app, run_tests = (block.strip() for block in _bash_blocks()[:2])
    assert run_app == VENV + "pip install -e . && python app.py"
    assert run_tests == VENV + "pip install -e . -r requirements-dev.txt && python -m pytest"


def test_ci_runs_the_readmes_test_command_exactly():
    run_tests = _bash_blocks()[1].strip()
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert run_tests in lines


@pytest.mark.slow
def test_the_venv_part_works_with_a_stock_debian_python(tmp_path):
    """Debian's own /usr/bin/python3 (externally managed): the venv is made and activated, and its pip
    is the one `pip install` runs."""
    stock = Path("/usr/bin/python3")
    if not stock.exists() or not list(Path("/usr/lib").glob("python3*/EXTERNALLY-MANAGED")):
        pytest.skip("no externally managed (PEP 668) system Python here")
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    command = VENV.replace("python3 ", f"{stock} ") + "command -v pip && pip --version"
    result = subprocess.run(["bash", "-euc", command], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == str(tmp_path / ".venv" / "bin" / "pip")
