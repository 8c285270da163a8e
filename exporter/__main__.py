"""``python -m exporter`` = the ``feldera-exporter`` command."""

import sys

from exporter.cli import main

sys.exit(main())
