#!/usr/bin/env bash
# The newcomer's path on one Python: the README's install (pip install -e .) into a fresh venv, then
# `llava-video tiny-checkpoint`, `inspect`, `ask` and `caption` on the shipped videos (assets/*.mp4), and
# the web app's import. Any failure (or a traceback) fails the script.
#
#   bash .ci/smoke.sh 3.12          # a fresh venv in .venvs/smoke-3.12 from Python 3.12, then the checks
#   bash .ci/smoke.sh --venv DIR    # the checks in an existing venv with the project installed (.ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/pythons.sh

if [ "${1:-}" = "--venv" ]; then
  venv=${2:?usage: .ci/smoke.sh --venv DIR}
else
  version=${1:?usage: .ci/smoke.sh PYTHON_VERSION (e.g. 3.12) or --venv DIR}
  python=$(find_python "$version")
  venv=.venvs/smoke-$version
  rm -rf "$venv"
  "$python" -m venv "$venv"
  (. "$venv/bin/activate" && pip install -q -e .)  # the README's install
fi
. "$venv/bin/activate"
echo "smoke: $(python --version) in $venv"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Run one command; its stderr goes to the log, and a traceback there fails even a zero exit.
check() {
  echo "+ $*" >&2
  if ! "$@" 2>"$work/stderr"; then
    cat "$work/stderr" >&2
    echo "smoke: FAILED: $*" >&2
    return 1
  fi
  if grep -q '^Traceback' "$work/stderr"; then
    cat "$work/stderr" >&2
    echo "smoke: a traceback from: $*" >&2
    return 1
  fi
}
model=(--model "$work/tiny" --quant fp32 --device cpu)
check llava-video tiny-checkpoint "$work/tiny" >/dev/null
check llava-video inspect assets/pan.mp4 "What happens?" "${model[@]}" >"$work/inspect"
grep -q '^model ' "$work/inspect" || { cat "$work/inspect"; echo "smoke: inspect printed no plan" >&2; exit 1; }
check llava-video ask assets/pan.mp4 "What happens?" "${model[@]}" --max-new-tokens 8 >"$work/ask"
check llava-video caption assets/square.mp4 "${model[@]}" --max-new-tokens 8 >"$work/caption"
for answer in ask caption; do  # the tiny model's words are gibberish, but never nothing
  [ -n "$(tr -d '[:space:]' <"$work/$answer")" ] || { echo "smoke: $answer printed no answer" >&2; exit 1; }
done
check python -c "import llava_video_app.web.app"
echo "smoke: ok on $(python --version)"
