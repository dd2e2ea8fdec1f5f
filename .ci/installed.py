"""Print the installed version of every package requirements.txt names; with --equal FILE, fail unless each
package FILE pins (name==version) is installed at exactly that version (a constraint that names no installed
package is otherwise ignored by pip without a word)."""

import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def names(path: Path) -> dict[str, str]:
    """{name: the version after ==, or ''} for each requirement line of `path`."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name = re.split(r"[=<>!~\[ ;]", line)[0]
            found[name] = line.split("==")[1].strip() if "==" in line else ""
    return found


def installed(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "(not installed)"


def main(args: list[str]) -> int:
    root = Path(__file__).resolve().parent.parent
    print(", ".join(f"{name} {installed(name)}" for name in names(root / "requirements.txt")))
    if args[:1] != ["--equal"]:
        return 0
    wrong = [f"{name}: {installed(name)} installed, {pin} pinned" for name, pin in names(Path(args[1])).items()
             if installed(name) != pin]
    for line in wrong:
        print(line, file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
