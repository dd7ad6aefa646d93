"""Shared CLI behaviour: one-line errors and exit code 2 for bad input."""
from __future__ import annotations

import sys
from contextlib import contextmanager

from .. import _core


@contextmanager
def cli_errors(prog: str):
    """Turns expected failures into one line on stderr and exit code 2 (never a traceback)."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(130)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"{prog}: error: {e.strerror or e}: {e.filename}", file=sys.stderr)
        raise SystemExit(2)
    except _core.BitstreamError as e:  # includes UnsupportedStreamError, LimitError
        print(f"{prog}: error: {type(e).__name__}: {e}", file=sys.stderr)
        raise SystemExit(2)
    except MemoryError:
        print(f"{prog}: error: out of memory", file=sys.stderr)
        raise SystemExit(2)
    except (ValueError, OSError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        raise SystemExit(2)
