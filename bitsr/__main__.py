"""``python -m bitsr COMMAND ...``: the ``bitsr`` command without installed entry points
(the development venv of ``make`` builds the extension in place rather than installing)."""
import sys

from .cli.main import main

sys.exit(main())
