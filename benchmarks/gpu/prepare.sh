#!/usr/bin/env bash
# Builds .gpu/ (git-ignored), what benchmarks/gpu/run.sh needs on a lent GPU machine that the working tree lacks:
#   .gpu/whl/*.whl        the packages the project imports that the device image lacks (benchmarks/gpu/wheels.txt;
#                         Python 3.12, manylinux x86_64, each dependency named there: pip resolves nothing)
#   .gpu/shared.tar.xz    all-MiniLM-L6-v2 as fp16 safetensors (loaded as fp32) with its tokenizer, MNLI train_10k,
#                         HANS, and SST-2 (4,096 training rows, dev) for benchmarks/trainer.py
#   .gpu/study.toml       studies/offline-heuristic-core.toml pointed at the unpacked copy, runtime cuda fp32
#   .gpu/study-bf16.toml  the same in bf16
# Runs here (needs ../shared and pip's index), takes ~1 minute, and fails when .gpu/ is over 60 MiB or .gpu/ and the
# working tree together are over the device tool's 64 MiB.
#
#   bash benchmarks/gpu/prepare.sh            (SHARED=/path/to/shared, PY=python to override)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
SHARED=${SHARED:-$ROOT/../shared}
PY=${PY:-$ROOT/.venv/bin/python}
MIB=$((1024 * 1024))

git check-ignore -q .gpu/whl/x.whl || { echo "prepare: .gpu is not git-ignored (add /.gpu/ to .gitignore)" >&2; exit 1; }
rm -rf .gpu
mkdir -p .gpu/whl

echo "[prepare] wheels (benchmarks/gpu/wheels.txt) for Python 3.12 manylinux x86_64"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
download() { "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .gpu/whl "$@" \
    2> >(grep -v "^WARNING: Location" >&2); }
# a line marked "# pure" gets its pure-Python wheel (sqlalchemy without its C extension: 2.1 MB instead of 4.7)
grep -E '^[A-Za-z]' benchmarks/gpu/wheels.txt | grep -v '# pure' | sed 's/ *#.*//' >.gpu/compiled.txt
grep -E '^[A-Za-z].*# pure' benchmarks/gpu/wheels.txt | sed 's/ *#.*//' >.gpu/pure.txt
download --implementation cp "${platforms[@]}" -r .gpu/compiled.txt
[ ! -s .gpu/pure.txt ] || download --implementation py --abi none --platform any -r .gpu/pure.txt
rm .gpu/compiled.txt .gpu/pure.txt
want=$(grep -cE '^[A-Za-z]' benchmarks/gpu/wheels.txt)
got=$(ls .gpu/whl/*.whl | wc -l)
dups=$(ls .gpu/whl | sed -E 's/-[0-9].*//' | tr 'A-Z_' 'a-z-' | sort | uniq -d)
[ "$got" = "$want" ] || { echo "prepare: $got wheels for $want names in wheels.txt" >&2; exit 1; }
[ -z "$dups" ] || { echo "prepare: two versions of: $dups (pip install stops on that)" >&2; exit 1; }
ls -l .gpu/whl | awk 'NR > 1 {printf "  %10d  %s\n", $5, $9}'

{ git rev-parse HEAD; git status --porcelain --untracked-files=no | sed 's/^/changed: /'; } >.gpu/source.txt
echo "[prepare] model, data and study files"
"$PY" benchmarks/gpu/prepare.py --shared "$SHARED" --out .gpu

carried=$(du -cb .gpu | tail -1 | cut -f1)
tree=$(git ls-files -co --exclude-standard -z | xargs -0 du -cb 2>/dev/null | grep total$ | awk '{s += $1} END {print s}')
total=$((carried + tree))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
echo "[prepare] .gpu: $carried bytes ($(mib "$carried") MiB: wheels $(mib "$(du -cb .gpu/whl | tail -1 | cut -f1)")," \
    "shared.tar.xz $(mib "$(stat -c %s .gpu/shared.tar.xz)"))"
echo "[prepare] working tree (tracked + untracked, not ignored): $tree bytes ($(mib "$tree") MiB);" \
    "with .gpu: $(mib "$total") MiB of the device tool's 64"
[ "$carried" -le $((60 * MIB)) ] || { echo "prepare: .gpu is over 60 MiB" >&2; exit 1; }
[ "$total" -le $((64 * MIB)) ] || { echo "prepare: .gpu + the working tree are over the device tool's 64 MiB" >&2; exit 1; }
echo "[prepare] done: the device call is  command 'bash benchmarks/gpu/run.sh', carry ['.gpu'], timeout_s 560"
