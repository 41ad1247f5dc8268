"""``python -m server_component``: the aggregator's entry point (``server_component.cli``)."""

import sys

from server_component.cli import main

sys.exit(main())
