#!/usr/bin/env bash
# Run here (with network to the package index), before a session that is lent a GPU machine.
#
# The GPU machines reach no network and run Python 3.12 with their own PyTorch (CUDA 13). This puts
# the wheels hdpbench's GPU benchmarks need there into .gpu/ (git-ignored), at the versions this
# checkout's .venv runs, in three folders: a call of the device tool carries at most 64 MiB with the
# working tree, and cuEquivariance's two kernel wheels alone are ~70 MiB. Then see measure.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=.venv/bin/python
version() { "$python" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }
download() {
  local folder=$1; shift
  mkdir -p ".gpu/$folder"
  "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
    -d ".gpu/$folder" "$@"
}
cueq=$(version cuequivariance-torch)
download wheels-1-cueq-ops "cuequivariance-ops-cu13==$cueq"
download wheels-2-cueq-ops-torch "cuequivariance-ops-torch-cu13==$cueq"
# hdpbench's runtime needs that the machine's image lacks (its list: /work/.library/device/KINDS.md);
# mace-torch's python-hostlist serves multi-node training only and has no wheel.
pinned=()
for package in ase phonopy spglib seekpath mace-torch e3nn torch-ema matscipy dscribe sparse pooch platformdirs \
  prettytable wcwidth configargparse lmdb orjson gitpython gitdb smmap torch-sim-atomistic vesin vesin-torch \
  cuequivariance cuequivariance-torch chgnet; do
  pinned+=("$package==$(version "$package")")
done
download wheels-3-base "${pinned[@]}"
du -sh .gpu/wheels-*
