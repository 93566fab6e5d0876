"""`python -m llmpulse.core.cli` runs the `llmpulse` command."""

import sys

from llmpulse.core.cli import main

sys.exit(main())
