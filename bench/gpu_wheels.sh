#!/usr/bin/env bash
# What the GPU machine's image lacks for the GPU suite, fetched where PyPI is reachable, into .whl/ (git
# ignores it), sized for the device tool's 64 MiB transfer; bench/gpu_run.sh installs it there.
#
#   bash bench/gpu_wheels.sh [PYTHON_VERSION] [CUDA_TAG]     # defaults: 3.12 cuda130 (the image's)
#
# The image (shared/reference and the device tool's KINDS.md): Python 3.12, torch 2.11.0+cu130,
# transformers 5.17.0, accelerate 1.15.0, tokenizers 0.23.2, huggingface_hub 1.33, safetensors 0.8.0;
# no bitsandbytes, torchao, PyAV, json-repair. What travels, and why (sizes as fetched on 2026-12-02):
#   transformers  newest in our range (requirements.txt): what the figures are for    13.5 MB
#   av            PyAV 18.1.0, an abi3 wheel that runs on 3.12 (19 dropped metadata_errors,
#                 which the app passes on PyAV before 19)                                   35.8 MB
#   torchao       our range: --quant int4                                                    3.4 MB
#   bitsandbytes  our range: --quant 4bit; unpacked to .whl/bnb with only the CPU library and
#                 libbitsandbytes_<CUDA_TAG>.so (3.9 MB) of the 16 in its 43 MB wheel         4.1 MB
#   accelerate    our range (the image has the same today; carried so a newer image changes nothing)
#   json-repair   synthesis (the synth part)
# transformers' own needs (huggingface-hub>=1.31, tokenizers>=0.23.1,<0.24, safetensors>=0.8, regex,
# typer) are the image's. The whole must fit 64 MiB with the working tree: checked at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-3.12}
CUDA_TAG=${2:-cuda130}
AV_VERSION=18.1.0
OUT=.whl
LIMIT=$((64 * 1024 * 1024))
rm -rf "$OUT" && mkdir -p "$OUT/bnb" "$OUT/dl"
pin() {  # NAME's requirement as requirements.txt states it (an exact pin or a range), or stop: pip download then
  # takes the newest version the range allows, as CI's newest venv does
  local line
  line=$(grep -iE "^$1[=<>!~ ]" requirements.txt | head -1 | sed 's/[[:space:]]*#.*//; s/[[:space:]]*$//')
  [ -n "$line" ] || { echo "gpu_wheels: requirements.txt names no $1" >&2; return 1; }
  echo "$line"
}

fetch() {  # one wheel, no dependencies, for the GPU machine's Python and platform
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PY" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$OUT/dl" "$@"
}

spec=$(pin bitsandbytes)  # an assignment: a failed pin stops the script (set -e)
fetch "$spec"
python3 - "$OUT" "$CUDA_TAG" <<'PY'
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
rm -f "$OUT"/dl/bitsandbytes-*.whl
spec=$(pin transformers)
fetch "$spec"
fetch "av==$AV_VERSION"
spec=$(pin torchao)
fetch "$spec"
spec=$(pin accelerate)
fetch "$spec"
fetch "$(grep -E '^json-repair' requirements.txt | head -1 | sed 's/[[:space:]]*#.*//')"  # any: a pure-Python helper
mv "$OUT"/dl/*.whl "$OUT"/ && rmdir "$OUT/dl"

# What the device tool sends: tracked files, untracked files git does not ignore, and .whl.
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
carried=$(du -sb "$OUT" | cut -f1)
ls -l "$OUT"/*.whl | awk '{printf "  %-70s %6.1f MB\n", $9, $5/1e6}'
printf '  %-70s %6.1f MB\n' "$OUT/bnb" "$(du -sb "$OUT/bnb" | cut -f1 | awk '{print $1/1e6}')"
total=$((tree + carried))
echo "working tree $((tree / 1024)) KiB + .whl $((carried / 1024)) KiB = $((total / 1024)) KiB of $((LIMIT / 1024)) KiB"
if [ "$total" -gt "$LIMIT" ]; then
  echo "gpu_wheels: over the device tool's 64 MiB: see docs/benchmarks.md (The GPU suite) for what can be left out" >&2
  exit 1
fi
echo "carry [\".whl\"] and run on the GPU machine: bash bench/gpu_run.sh --quick --budget 540 (docs/benchmarks.md)"
