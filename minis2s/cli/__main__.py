"""``python -m minis2s.cli``: the ``minis2s`` command."""

import sys

from . import main

sys.exit(main())
