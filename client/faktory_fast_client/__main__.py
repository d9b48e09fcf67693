"""``python -m faktory_fast_client worker module:attr``: see :mod:`faktory_fast_client.cli`."""
import sys

from .cli import main

sys.exit(main())
