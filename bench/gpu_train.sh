#!/usr/bin/env bash
# The shipped recipe tuned over the method's whole sampling budget on a lent GPU (issue 9,
# lever 6): all 7,915 requests of `recranker instructions requests --budget 5000 --genres
# --layout catalogue` (sha256 69606d44...; the shipped adapter saw 1,036 of them on a CPU),
# one epoch, the shipped hyper-parameters. A device call runs at most 10 minutes: each call
# tunes for MINUTES and checkpoints; the next call (machine still warm, .gpu/ kept there)
# continues with --resume. Every call copies the adapter so far into $OUT.
#
# Here, before bench/gpu_run.sh's bundling step (see its header), add the requests:
#   recranker instructions requests --budget 5000 --genres --layout catalogue --out /tmp/requests
#   mkdir -p .gpu/requests && cp /tmp/requests/manifest.json .gpu/requests/ \
#     && gzip -c /tmp/requests/examples.jsonl > .gpu/requests/examples.jsonl.gz   # 3.6 MB
# There: `MINUTES=8 bash bench/gpu_train.sh`, again until it prints "epoch done".
# Back here: evaluate the adapter on validation users only (`recranker weights`), as every
# adapter is (docs/results.md).
set -uo pipefail
OUT=${OUT:-bench/out}
PY=${PY:-python3}
MINUTES=${MINUTES:-8}
mkdir -p "$OUT"
source bench/gpu_env.sh
[ "$MODEL" = /tmp/recranker-model ] || { echo "training needs the real weights: stage with --with-gguf"; exit 1; }
[ -f .gpu/requests/examples.jsonl ] || gunzip -k .gpu/requests/examples.jsonl.gz || exit 1
RUN=.gpu/tune-run
RESUME=$([ -d $RUN ] && echo --resume)
RECRANKER_BASE_MODEL=$MODEL RECRANKER_HOME=$PWD/.gpu/home RECRANKER_DATA_DIR=$PWD/.gpu/data \
  $PY -m recranker.cli tune --data .gpu/requests --out $RUN --max-minutes "$MINUTES" --batch-size 1 \
  --grad-accum 4 --lr 3e-4 --lora-targets all --lora-dropout 0 --seed 0 $RESUME 2>&1 | tee -a "$OUT/tune.log"
mkdir -p "$OUT/adapter" && find $RUN -maxdepth 1 -type f -exec cp {} "$OUT/adapter/" \;
$PY -c "import json; m = json.load(open('$RUN/metrics.json')); s, n = m['steps'], m['planned_steps']; \
print('epoch done' if s >= n else f'{s} of {n} steps: run again')"
exit 0
