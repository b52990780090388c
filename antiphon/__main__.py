"""``python -m antiphon``: the same as the ``antiphon`` command."""

import sys

from antiphon.daemon.cli import main

sys.exit(main())
