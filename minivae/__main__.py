"""``python -m minivae``: the ``minivae`` command."""
import sys

from .cli import main

sys.exit(main())
