"""``python -m cxstream.sim``: the simulator without the main CLI."""

import sys

from cxstream.sim.cli import main

raise SystemExit(main(sys.argv[1:]))
