"""``python -m robust_hpo.cli``: the same program as ``robust-hpo``."""

import sys

from robust_hpo.cli import main

sys.exit(main())
