"""Run the service: ``recranker serve`` calls ``serve(settings)``; ``main()`` does the same
from RECRANKER_* environment variables alone (``python -m service.cli``, the Docker entry
point, and ``python -m service``)."""

from __future__ import annotations

import logging
import os
import socket
import sys

from pydantic import ValidationError

from stack.settings import Settings, describe_settings_error


def configure_logging(verbose: bool = False) -> None:
    """Logging for the entry points. On a terminal the long steps draw progress bars; in a
    log or a pipe they don't (carriage-return redraws would flood it) and each step logs
    its own start and end lines instead."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # one INFO line per CPU-feature probe
    if not sys.stderr.isatty():
        # bars drawn by libraries (transformers: weight loading, GGUF dequantization, shard
        # writing) take tqdm's defaults from TQDM_* variables; our own bars pass disable=None
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


class PortInUse(OSError):
    """The address the service should listen on is taken; the message says what to do."""


def check_port_free(host: str, port: int) -> None:
    """Fail in a second, not after the model has loaded, when ``host:port`` is taken (uvicorn
    binds only after the app's start-up)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a closed socket's TIME_WAIT is free
        try:
            probe.bind((host, port))
        except OSError as e:
            raise PortInUse(f"cannot listen on {host}:{port} ({e.strerror}): stop what holds it, or set "
                            "RECRANKER_PORT (recranker serve --port)") from None


def serve(settings: Settings) -> None:
    """Blocking: one uvicorn worker (one model per process; scale with replicas)."""
    import uvicorn

    from service.main import create_app

    check_port_free(settings.host, settings.port)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, workers=1,
                log_level="info", access_log=False, timeout_graceful_shutdown=10)


def main() -> None:
    configure_logging()
    try:
        settings = Settings()
    except ValidationError as e:
        sys.exit(f"recranker: error: {describe_settings_error(e)}")
    try:
        serve(settings)
    except PortInUse as e:
        sys.exit(f"recranker: error: {e}")


if __name__ == "__main__":
    main()
