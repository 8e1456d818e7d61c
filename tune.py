#!/usr/bin/env python
"""disparse-tune's command line: ``python tune.py --space dynamic.yaml`` (see ``--help``)."""

import sys

from sweeps.cli import main

if __name__ == "__main__":
    sys.exit(main())
