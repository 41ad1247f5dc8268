"""``python -m client_component``: a federated client's entry point (``client_component.cli``)."""

import sys

from client_component.cli import main

sys.exit(main())
