#!/usr/bin/env bash
# Fetch, where PyPI is reachable, what a bare GPU machine with torch and transformers lacks for the
# GPU suite, trimmed to fit a 64 MiB transfer; then run the suite there with the printed command.
#
#   bash bench/gpu_wheels.sh [PYTHON_VERSION] [CUDA_TAG]     # defaults: 3.12 cuda130 -> .whl/
#
# .whl/bnb   bitsandbytes unpacked, only the CPU library and libbitsandbytes_<CUDA_TAG>.so kept (4.5 MB
#            instead of 43 MB); on PYTHONPATH as it is
# .whl/*.whl PyAV (video decoding), torchao (--quant int4) and json-repair for the given Python,
#            installed on the GPU machine with pip --no-index --no-deps --target .whl/site
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-3.12}
CUDA_TAG=${2:-cuda130}
OUT=.whl
rm -rf "$OUT" && mkdir -p "$OUT/bnb"
pin() { grep -E "^$1[=<>]" requirements.txt | head -1 | sed 's/[[:space:]]*#.*//'; }

fetch() {  # pip download one wheel for the GPU machine's Python and platform
  pip download --quiet --no-deps --only-binary=:all: --python-version "$PY" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$OUT/dl" "$@"
}

fetch "$(pin bitsandbytes)"
python - "$OUT" "$CUDA_TAG" <<'PY'
import sys, zipfile, pathlib
out, tag = pathlib.Path(sys.argv[1]), sys.argv[2]
wheel = next((out / "dl").glob("bitsandbytes-*.whl"))
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = name.rsplit("/", 1)[-1]
        if base.startswith("libbitsandbytes_") and base not in (f"libbitsandbytes_{tag}.so", "libbitsandbytes_cpu.so"):
            continue
        z.extract(name, out / "bnb")
kept = sorted(p.name for p in (out / "bnb" / "bitsandbytes").glob("libbitsandbytes_*"))
if f"libbitsandbytes_{tag}.so" not in kept:
    sys.exit(f"this bitsandbytes wheel has no libbitsandbytes_{tag}.so (kept: {kept})")
PY
rm -rf "$OUT/dl"
fetch "$(pin av || echo av)"
fetch "$(pin torchao)"
fetch "$(pin json-repair)"
mv "$OUT"/dl/*.whl "$OUT"/ && rmdir "$OUT/dl"
du -sh "$OUT"
cat <<EOF
Carry $OUT (device tool: carry [".whl"]) and run on the GPU machine:
  pip install --quiet --no-index --no-deps --target .whl/site .whl/*.whl && \\
  PYTHONPATH=.whl/site:.whl/bnb:. python bench/gpu_suite.py
EOF
