import sys

from motion_server.cli import main

sys.exit(main())
