import sys

from client_component.cli import main

sys.exit(main())
