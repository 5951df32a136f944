"""``python -m eqprop``: the same as the ``eqprop`` command."""

import sys

from eqprop.cli import main

if __name__ == "__main__":
    sys.exit(main())
