"""The supported ranges, stated once and tested at both ends: every requirement has a lowest and a highest
bound, .ci/lowest.txt (what CI installs on the oldest Python) pins exactly each lowest bound, the
transformers range is the one the app checks at start-up, and the declared Pythons are the ones CI runs."""

import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from llava_video_app import transformers_support

ROOT = Path(__file__).resolve().parent.parent


def _requirements(path: Path) -> dict[str, Requirement]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {Requirement(line).name.lower().replace("_", "-"): Requirement(line) for line in lines if line}


def _lowest(spec: SpecifierSet) -> Version | None:
    return next((Version(s.version) for s in spec if s.operator in (">=", "==")), None)


PROJECT = _requirements(ROOT / "requirements.txt")
DEV_RANGED = {"datasets"}  # requirements-dev.txt's runtime-like package (the tests load our data with it)
RANGED = {**PROJECT, **{n: r for n, r in _requirements(ROOT / "requirements-dev.txt").items() if n in DEV_RANGED}}


def test_every_requirement_has_a_lowest_and_a_highest_bound():
    for name, requirement in RANGED.items():
        operators = {s.operator for s in requirement.specifier}
        assert "==" in operators or (">=" in operators and operators & {"<", "<="}), f"{name}: {requirement}"


def test_ci_pins_every_lowest_bound():
    pins = _requirements(ROOT / ".ci" / "lowest.txt")
    assert set(pins) == set(RANGED), "one pin per ranged requirement, no more"
    for name, requirement in RANGED.items():
        pinned = _lowest(pins[name].specifier)
        assert pinned == _lowest(requirement.specifier), f"{name}: {pins[name]} is not {requirement}'s lowest"


def test_the_transformers_range_is_the_one_checked_at_start_up():
    assert str(PROJECT["transformers"].specifier) == str(Requirement(transformers_support.SPEC).specifier)


def test_the_declared_pythons_are_the_ones_ci_tests():
    pyproject = (ROOT / "pyproject.toml").read_text()  # (tomllib is 3.11+)
    ci = dict(re.findall(r"^(OLDEST_PYTHON|NEWEST_PYTHON)=(\d+\.\d+)", (ROOT / ".ci" / "pythons.sh").read_text(), re.M))
    oldest, newest = (int(ci[k].split(".")[1]) for k in ("OLDEST_PYTHON", "NEWEST_PYTHON"))
    assert re.search(r'^requires-python = "(.*?)"', pyproject, re.M).group(1) == f">=3.{oldest}"
    declared = re.findall(r'^\s*"Programming Language :: Python :: (3\.\d+)",$', pyproject, re.M)
    assert declared == [f"3.{minor}" for minor in range(oldest, newest + 1)]
