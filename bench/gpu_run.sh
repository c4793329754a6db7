#!/usr/bin/env bash
# The GPU measurement of issue 5 (micro-batching throughput), run on a lent GPU machine:
# torch + CUDA + transformers present, no network, uploads of 64 MiB. Needs, carried:
#   .whl/  cp312 manylinux wheels of what the image lacks or has at other versions, as used
#          on 2026-11-27: fastapi 0.165.0, starlette 1.10.0, pydantic 2.14.4, pydantic-core
#          2.50.5, pydantic-settings 2.16.3, python-dotenv 1.2.4, annotated-types 0.8.0,
#          annotated-doc 0.0.7, typing-inspection 0.4.5, typing-extensions 4.16.0,
#          opentelemetry-api 1.45.2, uvicorn 0.54.0, redis 8.1.0, faiss-cpu 1.15.1,
#          transformers 5.24.0, tokenizers 0.23.3, regex 2026.11.19, peft 0.21.2 (~40 MB;
#          `pip download --no-deps --only-binary=:all: --python-version 3.12 ...`)
#   .gpu/  made here by `python -m bench.gpu_stage stage ...` (model config + tokenizer,
#          ML-100K files, trained backbone)
# Random weights (see bench/gpu_stage.py): the figures are speed only.
# Writes into $OUT (default bench/out): batching-gpu.json, load-gpu.json, env.txt, logs.
set -uo pipefail
# PY, DEVICE, WHEELS, BATCH_SIZES, ROUNDS, LOAD_DURATION, LOAD_TIMEOUT override the defaults; a CPU
# dry run: PY=.venv/bin/python DEVICE=cpu WHEELS=none BATCH_SIZES="1 2" ROUNDS=1 LOAD_DURATION=5 bash bench/gpu_run.sh
OUT=${OUT:-bench/out}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
WHEELS=${WHEELS:-.whl}
if [ -d "$WHEELS" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc
  $PY -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
} 2>&1 | tee "$OUT/env.txt"
MODEL=/tmp/recranker-random-model
$PY -m bench.gpu_stage random-weights .gpu/model $MODEL || exit 1

# 1) engine level: N users one at a time vs one rank_many call
timeout 150 $PY -m bench.bench_batching --data .gpu/data/ml-100k --model $MODEL --device $DEVICE \
  --adapter models/recranker-smollm2-ml100k --batch-sizes ${BATCH_SIZES:-1 8 32} --rounds ${ROUNDS:-3} --out "$OUT/batching-gpu.json" \
  2>&1 | grep -v "Loading weights" | tee "$OUT/batching-gpu.log"

# 2) service level: 8 concurrent HTTP clients, micro-batching on vs off (issue 5's goal)
export RECRANKER_BASE_MODEL=$MODEL RECRANKER_DATA_DIR=$PWD/.gpu/data RECRANKER_HOME=$PWD/.gpu/home \
  RECRANKER_DEVICE=$DEVICE
timeout ${LOAD_TIMEOUT:-280} $PY -m bench.bench_load --clients 8 --duration ${LOAD_DURATION:-30} --rounds 2 \
  --backbone lightgcn --adapter "$PWD/models/recranker-smollm2-ml100k" --num-candidates 10 \
  --pairwise-budget 5 --listwise-shuffles 3 --startup-timeout 120 --out "$OUT/load-gpu.json" 2>&1 | tee "$OUT/load-gpu.log"
cp bench/out/server-*.log "$OUT/" 2>/dev/null
exit 0
