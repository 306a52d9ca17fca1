"""``python -m eventgate``: the ``eventgate`` command (eventgate/cli.py), as ``python -m flask``
is Flask's."""

import sys

from eventgate.cli import main

if __name__ == "__main__":
    sys.exit(main())
