"""Shared CLI behaviour: one-line errors and exit code 2 for bad input."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager

import av

from .. import _core


@contextmanager
def cli_errors(prog: str):
    """Turns expected failures into one line on stderr and exit code 2 (never a traceback)."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"{prog}: error: {e.strerror or e}: {e.filename}", file=sys.stderr)
        raise SystemExit(2) from None
    except _core.BitstreamError as e:  # includes UnsupportedStreamError, LimitError
        print(f"{prog}: error: {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        raise SystemExit(2) from None
    except MemoryError:
        print(f"{prog}: error: out of memory", file=sys.stderr)
        raise SystemExit(2) from None
    except (ValueError, OSError, av.error.FFmpegError) as e:  # incl. PyAV/FFmpeg container errors
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as e:  # a bug, not bad input: still one line unless asked for more
        if os.environ.get("BITSR_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(e).__name__}: {_one_line(e)} (set BITSR_DEBUG=1 for a traceback)",
              file=sys.stderr)
        raise SystemExit(1) from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
