#!/usr/bin/env bash
# The GPU machine's image emulated on CPU, to find before a GPU session what would break there: a venv
# with the image's Python 3.12, torch 2.11.0 and transformers 5.17.0 (and its other packages at the image's
# versions), the wheels of bench/gpu_wheels.sh installed by bench/gpu_run.sh exactly as on the GPU
# machine, then the suite's dry runs through that same script: the preflight, --quick, and the full suite
# split over two calls as docs/benchmarks.md splits it.
#
#   bash bench/emulate_gpu_image.sh [VENV]      # default bench/.cache/gpu-image-venv; reports in
#                                               # bench/.cache/emulated/{preflight,quick,...}
#   EMULATE=quick bash bench/emulate_gpu_image.sh   # only the preflight and --quick (with the carried
#                                                   # transformers and with the image's own 5.17)
#   EMULATE=full bash bench/emulate_gpu_image.sh    # only the full suite's two calls
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-bench/.cache/gpu-image-venv}
REPORTS=bench/.cache/emulated
# The image's packages that the suite touches, at its versions (device tool's KINDS.md, read 2026-11).
IMAGE=(torch==2.11.0 triton==3.6.0 transformers==5.17.0 accelerate==1.15.0 numpy==2.5.2 safetensors==0.8.0
       tokenizers==0.23.2 huggingface_hub==1.33.0 pillow psutil pyyaml regex tqdm typer filelock)
is_image() {
  "$VENV/bin/python3" -c 'import sys, torch, transformers
sys.exit(not (sys.version_info[:2] == (3, 12) and torch.__version__.startswith("2.11.0")
              and transformers.__version__ == "5.17.0"))' 2>/dev/null
}
if ! is_image; then
  echo "emulate: making $VENV (Python 3.12, torch 2.11.0, transformers 5.17.0; about 3 GB)"
  rm -rf "$VENV"
  PYENV_VERSION=${PYENV_VERSION:-3.12.1} "${PYTHON312:-python3.12}" -m venv "$VENV"
  "$VENV/bin/python3" -m pip install -q "${IMAGE[@]}"
  is_image || { echo "emulate: $VENV is not like the image after the install" >&2; exit 1; }
fi
[ -d .whl/bnb ] || bash bench/gpu_wheels.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
VENV_BIN=$(cd "$VENV/bin" && pwd)
mkdir -p "$REPORTS"
run() {  # NAME FLAGS...: bench/gpu_run.sh as the GPU machine runs it, python3 being the image's
  local name=$1
  shift
  echo "== emulate: bash bench/gpu_run.sh $*"
  rm -rf "${REPORTS:?}/$name"
  # TORCHINDUCTOR_CACHE_DIR: this emulation's own compile cache (a shared one under /tmp is written by
  # every torch.compile on the machine: two compiling the same kernel at once can read a half-written .so)
  env -u PYTHONPATH PATH="$VENV_BIN:$PATH" GPU_RUN_SITE="$tmp/site-$name" OUT="$REPORTS/$name" \
    TORCHINDUCTOR_CACHE_DIR="$tmp/inductor" bash bench/gpu_run.sh "$@"
}
work=$tmp/work
# --budget and --part-timeout as on the GPU machine, larger: 540 s is the GPU call's limit and 300 s a 7B
# part's there; a dry run on a busy 2-core CPU took up to 270 s for one part.
budget="${EMULATE_BUDGET:-3000} --part-timeout ${EMULATE_PART_TIMEOUT:-1200}"
if [ "${EMULATE:-all}" != full ]; then
  run preflight --dry-run --parts preflight --workdir "$work"
  run quick --dry-run --quick --budget $budget --workdir "$work"
  # The image's own transformers (5.17, the lowest supported), as if the carried one were left out.
  GPU_RUN_SKIP=transformers run quick-transformers-5.17 --dry-run --quick --budget $budget --workdir "$work"
  grep -q '"transformers": "5.17.0' "$REPORTS/quick-transformers-5.17/gpu_suite-quick-dry-run.json" \
    || { echo "emulate: the run without the carried transformers did not use the image's 5.17.0" >&2; exit 1; }
fi
if [ "${EMULATE:-all}" != quick ]; then
  run full-1 --dry-run --parts preflight,nf4,restart,bf16 --budget $budget --workdir "$work"
  run full-2 --dry-run --parts int4,synth --continue --budget $budget --workdir "$work"
fi
echo "emulate: every dry run passed on the image's versions; reports in $REPORTS"
