"""`python -m raysweep.cli`."""
from . import run

run()
