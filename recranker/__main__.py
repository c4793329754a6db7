import sys

from recranker.cli import main

sys.exit(main())
