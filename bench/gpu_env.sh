# Sourced by bench/gpu_run.sh and bench/gpu_train.sh (PY and OUT set): unpack what travelled
# (once per machine), install the carried wheels (once), put them and the repo on the import
# path, and set MODEL to a checkpoint converted once: the real weights when the bundled GGUF
# travelled (.gpu/gguf), else seeded random weights (speed only).
if [ -f .gpu-parts/manifest.json ] && [ ! -f /tmp/gpu-bundle.tar ]; then
  $PY -m bench.gpu_stage join .gpu-parts /tmp/gpu-bundle.tar && tar -xf /tmp/gpu-bundle.tar || exit 1
fi
WHEELS=${WHEELS:-.whl}
if [ -d "$WHEELS" ] && [ ! -d /tmp/site ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
fi
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
GGUF=$(ls .gpu/gguf/*.gguf 2>/dev/null | head -1)
if [ -n "$GGUF" ]; then
  MODEL=/tmp/recranker-model
  [ -f $MODEL/config.json ] || $PY -m bench.gpu_stage real-weights "$GGUF" .gpu/model $MODEL 2>&1 \
    | grep -v "Loading weights" | tee -a "$OUT/env.txt" || exit 1
else
  MODEL=/tmp/recranker-random-model
  [ -f $MODEL/config.json ] || $PY -m bench.gpu_stage random-weights .gpu/model $MODEL | tee -a "$OUT/env.txt" || exit 1
fi
