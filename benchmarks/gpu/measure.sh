#!/usr/bin/env bash
# Run on a GPU machine through the device tool, in four calls in a row (the machine stays warm ~30 s
# between calls and keeps .gpu/site; each call carries one wheel folder that fetch_wheels.sh made):
#
#   carry [".gpu/wheels-1-cueq-ops"]        command: bash benchmarks/gpu/measure.sh install
#   carry [".gpu/wheels-2-cueq-ops-torch"]  command: bash benchmarks/gpu/measure.sh install
#   carry [".gpu/wheels-3-base"]            command: bash benchmarks/gpu/measure.sh main
#   (no carry)                              command: bash benchmarks/gpu/measure.sh cueq
#
# Each part installs what its call carried, then runs issue 19's GPU measurements and writes their
# JSON to $OUT (at most 8 files come back per call; default benchmarks/results/); copy what comes
# back into benchmarks/results/ and commit it. Every report names the hardware. Each part should stay
# within a call's 10 minutes on an H100 (our estimate, not measured: the ASE loop for 256 replicas is
# the longest); each benchmark is cut at 500 s (the --compile run did not finish in 500 s on the
# 2-core CPU in the small check: compiling dominates).
# Elsewhere: PYTHON=.venv/bin/python DEVICE=cpu QUICK=1 bash benchmarks/gpu/measure.sh main (a check).
set -uo pipefail
cd "$(dirname "$0")/../.."
part=${1:?"usage: measure.sh install|main|cueq"}
python=${PYTHON:-python3}
device=${DEVICE:-cuda}
out=${OUT:-benchmarks/results}
site=.gpu/site
mkdir -p "$site" "$out"
for folder in .gpu/wheels-*/; do
  [ -d "$folder" ] || continue
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$folder"*.whl \
    || { echo "installing $folder failed"; exit 1; }
done
export PYTHONPATH="$PWD/$site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
replicas=(16 64 256)
quick=()
if [ -n "${QUICK:-}" ]; then replicas=(2); quick=(--steps 1); fi
bench() {  # bench NAME ARGS...: one report, $out/NAME.json
  local name=$1; shift
  echo "== hdpbench bench $* ($name)"
  timeout 500 "$python" -m hdpbench bench "$@" --device "$device" --output "$out/$name.json" || echo "!! $name failed (exit $?)"
}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
"$python" -c "import torch, e3nn, mace; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'e3nn', e3nn.__version__)"
case "$part" in
  install) ;;
  main)
    if [ -n "${QUICK:-}" ]; then bench "evaluate_${device}_float32" evaluate --quick; else bench "evaluate_${device}_float32" evaluate; fi
    if [ -n "${QUICK:-}" ]; then bench "rematch_${device}" rematch --quick; else bench "rematch_${device}" rematch; fi
    for n in "${replicas[@]}"; do bench "md_${device}_128ch_${n}" md --channels 128 --replicas "$n" "${quick[@]}"; done
    bench "calculator_chgnet_${device}" calculator --model chgnet-0.3.0 ${QUICK:+--quick}
    ;;
  cueq)
    for n in "${replicas[@]}"; do bench "md_${device}_128ch_${n}_cueq" md --channels 128 --replicas "$n" --accelerator cueq "${quick[@]}"; done
    bench "md_${device}_128ch_${replicas[1]:-${replicas[0]}}_compile" md --channels 128 --replicas "${replicas[1]:-${replicas[0]}}" --compile "${quick[@]}"
    ;;
  *) echo "usage: measure.sh install|main|cueq" >&2; exit 2 ;;
esac
