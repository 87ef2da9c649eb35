"""`python -m service.cli`: the `vigil` entry point."""

import sys

from service.cli.main import main

sys.exit(main())
