"""``python -m service``: run the service from RECRANKER_* settings (see service.server)."""

from service.server import main

main()
