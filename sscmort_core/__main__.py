"""``python -m sscmort_core``: the sscmort command line."""

import sys

from sscmort_core.cli import main

sys.exit(main())
