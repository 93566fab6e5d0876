"""`python -m core.cli` runs the `llmpulse` command."""

import sys

from core.cli import main

sys.exit(main())
