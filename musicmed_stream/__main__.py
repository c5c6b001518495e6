"""``python -m musicmed_stream`` is the ``musicmed-stream`` command."""

import sys

from musicmed_stream.cli.main import main

sys.exit(main())
