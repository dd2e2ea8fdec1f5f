#!/usr/bin/env bash
# The GPU suite on the GPU machine, as docs/benchmarks.md runs it through the device tool: the wheels that
# bench/gpu_wheels.sh put in .whl/ installed beside the image's own packages (ahead of them on the path),
# then bench/gpu_suite.py with the flags given here; the log goes beside the report, to $OUT when set.
#
#   bash bench/gpu_run.sh --quick --budget 540          # one 10-minute call
#
# bench/emulate_gpu_image.sh runs this same script on CPU in a venv like the image (--dry-run).
set -uo pipefail
cd "$(dirname "$0")/.."
SITE=${GPU_RUN_SITE:-/tmp/site}
if [ ! -d .whl/bnb ]; then
  echo "gpu_run: no .whl/ here: run bash bench/gpu_wheels.sh where PyPI is reachable, then carry .whl" >&2
  exit 2
fi
# GPU_RUN_SKIP="transformers ...": wheels left out, the image's own version used (docs/benchmarks.md)
wheels=()
for wheel in .whl/*.whl; do
  name=$(basename "$wheel" | cut -d- -f1)
  [[ " ${GPU_RUN_SKIP:-} " == *" $name "* ]] || wheels+=("$wheel")
done
if ! python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}"; then
  echo "gpu_run: pip could not install .whl/*.whl into $SITE" >&2
  exit 2
fi
export PYTHONPATH="$SITE:$PWD/.whl/bnb:$PWD" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
out=${OUT:-bench/results}
mkdir -p "$out"
python3 bench/gpu_suite.py "$@" 2>&1 | tee "$out/gpu_suite.log"
exit "${PIPESTATUS[0]}"
