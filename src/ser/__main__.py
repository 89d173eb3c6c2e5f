"""``python -m ser``."""

import sys

from ser.cli import main

if __name__ == "__main__":
    sys.exit(main())
