import sys

from server_component.cli import main

sys.exit(main())
