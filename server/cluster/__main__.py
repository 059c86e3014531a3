"""``python -m server.cluster``: server/cluster/cli.py."""

import sys

from server.cluster.cli import main

sys.exit(main())
