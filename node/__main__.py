"""`python -m node` runs the `qkdnode` console script."""

import sys

from node.cli import main

sys.exit(main())
