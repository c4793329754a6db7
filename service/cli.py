"""``python -m service.cli``: the Docker entry point's name, kept stable; the code is in
``service.server``."""

from service.server import main

if __name__ == "__main__":
    main()
