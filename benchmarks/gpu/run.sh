#!/usr/bin/env bash
# The GPU figures of issue 17 item 6 and issue 16, in one call of the device tool (a lent H100/H200, 15 minutes):
#
#   device run: command "bash benchmarks/gpu/run.sh", carry [".gpu"], timeout_s 560
#   (first, here: bash benchmarks/gpu/prepare.sh, which builds .gpu/; docs/figures.md, "On a lent GPU")
#
# Steps, each under its own `timeout` inside a budget of GPU_BUDGET_S (default 500 s) so the call ends well inside
# its limit; a step that would start with too little time left is skipped (summary.json says so):
#   probe      the carried wheels installed into /tmp/site import; every project module imports; an MLflow store
#              and the Optuna queue are created; the carried MiniLM loads as fp32 and runs on the GPU
#   l0-minilm  benchmarks/l0.py --device cuda: L0 step live vs cached teacher, and K = 8 subnetworks per step
#              batched (one L0Stack pass) vs sequential: subnetworks/s each (issue 17: batched >= 4x)
#   l0-bert-base  the same on a bert-base-sized model built from a config (12 layers, hidden 768)
#   trainer    benchmarks/trainer.py --device cuda --no-schemes: fine-tuning + evaluation examples/s, ours vs
#              transformers.Trainer, random-order and length-grouped, all-MiniLM-L6-v2 on SST-2 (4,096 x 1 epoch)
#   hc-fp32    the offline Heuristic Core study end to end (.gpu/study.toml: runtime cuda fp32), fresh store
#              /tmp/hc, 2 workers: its wall time; then `subnets plan` (what finished), and `subnets query` of the
#              findings and `subnets report` where duckdb is importable (the device image lacks it, and its wheel
#              does not fit the 64 MiB that travels: then read the store back here, see docs/figures.md)
#   hc-bf16    the same study in bf16 autocast (.gpu/study-bf16.toml, store /tmp/hc-bf16), if time is left:
#              whether bf16 keeps the study's answers (compare the two stores' findings here)
# Results under $OUT (at most 8 files come back): run.log (everything printed), summary.json (every step's exit
# status, seconds and last JSON line; a table of it ends the log), hc-store.tar.gz and hc-bf16-store.tar.gz (the
# stores, without the fine-tuned model cache; unpack with `tar -C /tmp -xzf`), and findings/report where possible.
#
#   bash benchmarks/gpu/run.sh --cpu-smoke    (here, OUT=/tmp/gpu_out: no install, no nvidia-smi, CPU, every step
#                                              at its smallest, the study only validated and planned, and imports
#                                              limited to what the device has: benchmarks/gpu/guard)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
SMOKE=0
[ "${1:-}" = "--cpu-smoke" ] && SMOKE=1
: "${OUT:?set OUT to the folder for the results}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run.log") 2>&1
BUDGET=${GPU_BUDGET_S:-500}
START=$(date +%s)
WORK=/tmp/subnets-gpu # the unpacked model and data (paths in .gpu/study*.toml), step logs
SHARED=$WORK/shared
LOGS=$WORK/logs
rm -rf "$LOGS" && mkdir -p "$LOGS"
: >"$LOGS/steps.tsv"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
say() { echo "[run $(($(date +%s) - START))s] $*"; }

if [ "$SMOKE" = 1 ]; then
    PY=${PY:-$ROOT/.venv/bin/python}
    export OMP_NUM_THREADS=1 GPU_GUARD=1 GPU_GUARD_LOG="$OUT/guard-blocked.txt" GPU_GUARD_USED="$OUT/guard-used.txt"
    export DISABLE_SQLALCHEMY_CEXT_RUNTIME=1 # the carried sqlalchemy is the pure-Python wheel
    export PYTHONPATH="$ROOT/benchmarks/gpu/guard:$ROOT"
    rm -f "$GPU_GUARD_LOG" "$GPU_GUARD_USED"
    say "CPU smoke run: $PY, imports limited to the device's packages + benchmarks/gpu/wheels.txt"
else
    PY=/opt/torch/.venv/bin/python3
    [ -x "$PY" ] || PY=python3
    [ -d .gpu/whl ] || { say "no .gpu/whl: run benchmarks/gpu/prepare.sh here and carry .gpu"; exit 1; }
    say "installing $(ls .gpu/whl/*.whl | wc -l) wheels into /tmp/site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .gpu/whl/*.whl || { say "pip install failed"; exit 1; }
    export PYTHONPATH="/tmp/site:$ROOT"
    nvidia-smi || say "nvidia-smi failed"
fi
say "python $("$PY" -c 'import sys; print(sys.version.split()[0], sys.executable)')"
say ".gpu built at commit $(head -1 .gpu/source.txt 2>/dev/null) ($(grep -c '^changed' .gpu/source.txt 2>/dev/null) files changed)"
subnets() { "$PY" -m registry.cli "$@"; }

say "unpacking .gpu/shared.tar.xz into $SHARED"
rm -rf "$SHARED"
"$PY" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')" \
    .gpu/shared.tar.xz "$SHARED" || { say "unpacking failed"; exit 1; }

# step NAME CAP_S MIN_S COMMAND...: runs COMMAND under timeout min(CAP_S, the budget left), or skips it when less
# than MIN_S is left; its output goes to the log and to $LOGS/NAME.log; steps.tsv gets name, exit status, seconds
step() {
    local name=$1 cap=$2 min=$3
    shift 3
    local left=$((BUDGET - ($(date +%s) - START)))
    local limit=$((cap < left ? cap : left))
    if [ "$limit" -lt "$min" ]; then
        say "=== $name: skipped (${left}s of the budget left, needs ${min}s)"
        printf '%s\tskipped\t0\n' "$name" >>"$LOGS/steps.tsv"
        return 0
    fi
    say "=== $name (timeout ${limit}s): $*"
    local t0 rc
    t0=$(date +%s.%N)
    timeout -k 10 "$limit" "$@" 2>&1 | tee "$LOGS/$name.log"
    rc=${PIPESTATUS[0]}
    local secs
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    say "=== $name: exit $rc after ${secs}s"
    printf '%s\t%s\t%s\n' "$name" "$rc" "$secs" >>"$LOGS/steps.tsv"
    return 0
}

# the store without the fine-tuned model and teacher caches, gzipped into $OUT (16 MiB at most comes back)
pack_store() {
    local store=$1 name=$2
    [ -d "$store" ] || return 0
    tar -C "$(dirname "$store")" -czf "$OUT/$name" --exclude='.subnets' "$(basename "$store")"
    if [ "$(stat -c %s "$OUT/$name")" -gt $((15 * 1024 * 1024)) ]; then
        say "$name over 15 MiB: packing again without *.safetensors (masks)"
        tar -C "$(dirname "$store")" -czf "$OUT/$name" --exclude='.subnets' --exclude='*.safetensors' \
            "$(basename "$store")"
    fi
    say "$name: $(stat -c %s "$OUT/$name") bytes"
}

# the study: wall time of `subnets run`, then what finished, and the findings and report where duckdb imports
study() {
    local tag=$1 file=$2 store=$3 cap=$4 min=$5
    rm -rf "$store"
    step "$tag" "$cap" "$min" "$PY" -m registry.cli run hc-offline --file "$file" --store "$store" --workers 2
    [ -d "$store" ] || return 0
    subnets plan hc-offline --file "$file" --store "$store" --format csv >"$LOGS/$tag-plan.csv" 2>&1
    cat "$LOGS/$tag-plan.csv"
    if "$PY" -c "import duckdb" 2>/dev/null; then
        timeout 60 "$PY" -m registry.cli query "select * from findings" --store "$store" --format csv \
            --output "$OUT/$tag-findings.csv" || say "query failed"
        [ "$tag" = hc-bf16 ] || timeout 90 "$PY" -m registry.cli report --store "$store" --no-mlflow \
            --out "$OUT/$tag-report.html" || say "report failed"
    else
        say "no duckdb here: query the findings and build the report from $(basename "$store")-store.tar.gz"
    fi
    pack_store "$store" "${tag%-fp32}-store.tar.gz"
}

MODEL_DIR=$SHARED/models/all-MiniLM-L6-v2
if [ "$SMOKE" = 1 ]; then
    step probe 120 10 "$PY" benchmarks/gpu/probe.py --model "$MODEL_DIR" --device cpu
    step l0-minilm 120 10 "$PY" benchmarks/l0.py --quick --steps 1 --kway-steps 1 --device cpu
    # bert-base on one CPU thread: 210 s on a slow host (2026-12-07; the old 180 s cap timed it out)
    step l0-bert-base 330 10 "$PY" benchmarks/l0.py --quick --steps 1 --kway-steps 1 --device cpu --size bert-base
    step trainer 180 10 "$PY" benchmarks/trainer.py --quick --threads 1 --no-schemes --device cpu --shared "$SHARED"
    step validate 60 5 "$PY" -m registry.cli validate --file .gpu/study.toml
    step validate-bf16 60 5 "$PY" -m registry.cli validate --file .gpu/study-bf16.toml
    step plan 60 5 "$PY" -m registry.cli plan hc-offline --file .gpu/study.toml --store /tmp/gpu-smoke-store \
        --format csv
else
    step probe 90 10 "$PY" benchmarks/gpu/probe.py --model "$MODEL_DIR" --device cuda
    step l0-minilm 75 30 "$PY" benchmarks/l0.py --device cuda
    step l0-bert-base 75 30 "$PY" benchmarks/l0.py --device cuda --size bert-base
    step trainer 120 45 "$PY" benchmarks/trainer.py --device cuda --no-schemes --shared "$SHARED"
    study hc-fp32 .gpu/study.toml /tmp/hc 240 90
    study hc-bf16 .gpu/study-bf16.toml /tmp/hc-bf16 240 150
fi

"$PY" benchmarks/gpu/summarize.py --logs "$LOGS" --out "$OUT/summary.json" --seconds "$(($(date +%s) - START))"
say "done; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exec >/dev/null 2>&1 # tee sees the end of its input and finishes run.log before the call returns
sleep 1
