#!/usr/bin/env bash
# The GPU measurements (issue 14 goal 5, issue 5's micro-batching), run on a lent GPU machine:
# torch + CUDA present, no network, 64 MiB per call with the working tree (~30 MiB) included.
#
# Here, once (bench/gpu_stage.py says what each step does):
#   echo /.whl/ >> .git/info/exclude   # .gpu/, .gpu-parts/, .whl/ are in .gitignore already
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl fastapi==0.165.0 fastapi-offline==1.7.7 starlette==1.10.0 \
#     pydantic==2.14.4 pydantic_core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4 \
#     annotated-types==0.8.0 annotated-doc==0.0.7 typing-inspection==0.4.5 uvicorn==0.55.0 redis==8.2.0 \
#     prometheus_client==0.26.0 faiss-cpu==1.15.1 transformers==5.25.0 peft==0.21.2 gguf==0.19.0   # 37 MB
#   .venv/bin/python -m bench.gpu_stage stage --model-dir $RECRANKER_HOME/models/smollm2-135m-instruct \
#     --data $RECRANKER_DATA_DIR/ml-100k --home $RECRANKER_HOME --with-gguf --to .gpu
#   tar -cf /tmp/gpu-bundle.tar .gpu .whl && .venv/bin/python -m bench.gpu_stage split /tmp/gpu-bundle.tar --to .gpu-parts
# Then one device call per part while the machine stays warm, each carrying its part and the
# manifest (carry [".gpu-parts/part-K", ".gpu-parts/manifest.json"], command `ls .gpu-parts`);
# the call with the last part runs `bash bench/gpu_run.sh`, which joins them (sha256 checked).
#
# Without .gpu-parts (or with an already unpacked .gpu/ and .whl/ carried) it runs as it is;
# without the GGUF in .gpu/gguf it uses random weights (speed only; scores mean nothing).
# Writes into $OUT (default bench/out): batching-gpu.json, load-gpu.json, env.txt, logs.
set -uo pipefail
# PY, DEVICE, WHEELS, BATCH_SIZES, SERIAL_UP_TO, ROUNDS, CLIENTS, MAX_BATCH, LOAD_DURATION,
# LOAD_TIMEOUT override the defaults; a CPU dry run:
#   PY=.venv/bin/python DEVICE=cpu WHEELS=none BATCH_SIZES="1 2" ROUNDS=1 CLIENTS=2 LOAD_DURATION=5 bash bench/gpu_run.sh
OUT=${OUT:-bench/out}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; } 2>&1 | tee "$OUT/env.txt"
source bench/gpu_env.sh
$PY -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)" \
  2>&1 | tee -a "$OUT/env.txt"
# the service's settings (adapter, its prompt layout, 10 candidates, all three modes forced)
export RECRANKER_BASE_MODEL=$MODEL RECRANKER_DATA_DIR=$PWD/.gpu/data RECRANKER_HOME=$PWD/.gpu/home \
  RECRANKER_DEVICE=$DEVICE RECRANKER_ADAPTER=$PWD/models/recranker-smollm2-ml100k

# 1) engine level: ranked users/s for batches of B users (goal 5: >= 100 users/s), one at a
#    time as well for the small B (what batching buys)
timeout ${BATCH_TIMEOUT:-200} $PY -m bench.bench_batching --batch-sizes ${BATCH_SIZES:-1 8 32 64 128} \
  --serial-up-to ${SERIAL_UP_TO:-8} --rounds ${ROUNDS:-5} --out "$OUT/batching-gpu.json" \
  2>&1 | grep -v "Loading weights" | tee "$OUT/batching-gpu.log"

# 2) service level: concurrent HTTP clients, every request a new user, prefix cache off (943
#    users run out within seconds at this rate), micro-batches of up to MAX_BATCH requests
RECRANKER_PREFIX_CACHE_MB=0 timeout ${LOAD_TIMEOUT:-240} $PY -m bench.bench_load --clients ${CLIENTS:-8 64} \
  --duration ${LOAD_DURATION:-30} --backbone lightgcn --max-batch ${MAX_BATCH:-64} --queue-max 256 \
  --startup-timeout 120 --out "$OUT/load-gpu.json" 2>&1 | tee "$OUT/load-gpu.log"
cp bench/out/server-*.log "$OUT/" 2>/dev/null
exit 0
