"""Run the service: ``recranker serve`` calls ``serve(settings)``; ``main()`` does the same
from RECRANKER_* environment variables alone (``python -m service.cli``, the Docker entry
point, and ``python -m service``)."""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from stack.settings import Settings, describe_settings_error


def serve(settings: Settings) -> None:
    """Blocking: one uvicorn worker (one model per process; scale with replicas)."""
    import uvicorn

    from service.main import create_app

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, workers=1,
                log_level="info", access_log=False, timeout_graceful_shutdown=10)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
    except ValidationError as e:
        sys.exit(f"recranker: error: {describe_settings_error(e)}")
    serve(settings)


if __name__ == "__main__":
    main()
