"""Shared CLI behaviour: one-line errors and exit code 2 for bad input, inputs given as files,
globs or folders, output paths checked before any work, overwrite rules as in ffmpeg (-y / -n),
and batches that go on after a failure."""
from __future__ import annotations

import glob
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

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
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError) as e:
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


def add_version(ap) -> None:
    from .. import __version__

    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")


def add_overwrite(ap) -> None:
    g = ap.add_mutually_exclusive_group()
    g.add_argument("-y", dest="overwrite", action="store_true", default=None,
                   help="overwrite existing outputs without asking")
    g.add_argument("-n", dest="overwrite", action="store_false",
                   help="never overwrite: skip inputs whose output exists")


def _natural(s: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def expand_inputs(items) -> list[Path]:
    """Files as given; folders as the video files in them (by extension, natural order); glob
    patterns (quoted, so the shell left them) as their matches. A pattern or folder that gives
    nothing is an error naming it."""
    from ..io.formats import VIDEO_EXTENSIONS

    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted((f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS),
                           key=lambda f: _natural(f.name))
            if not found:
                raise FileNotFoundError(2, "no video files in folder", str(p))
            out += found
        elif not p.exists() and glob.has_magic(str(item)):
            found = sorted((Path(f) for f in glob.glob(str(item)) if os.path.isfile(f)), key=lambda f: _natural(f.name))
            if not found:
                raise FileNotFoundError(2, "no files match", str(item))
            out += found
        else:
            out.append(p)
    return out


def may_write(dst: Path, overwrite: Optional[bool], prog: str) -> bool:
    """Whether to write ``dst``: yes when it does not exist or with -y; no with -n; otherwise
    ask on a terminal (ffmpeg's question) and refuse (FileExistsError) when nobody can answer."""
    from ..io.paths import first_file

    if not first_file(dst).exists() or overwrite:
        return True
    if overwrite is False:
        return False
    if sys.stdin is not None and sys.stdin.isatty():
        ans = input(f"{prog}: file '{dst}' already exists. Overwrite? [y/N] ")
        return ans.strip().lower() in ("y", "yes")
    raise FileExistsError(17, "output exists (-y overwrites, -n skips)", str(dst))


def run_batch(inputs: list[Path], one: Callable[[Path], Optional[str]], prog: str) -> int:
    """Runs ``one(input)`` for each input, going on after a failure (reported as one line, as
    for a single input). ``one`` returns "skipped" for a skipped input. Prints a summary; exit
    code 1 if any failed, else 0."""
    done = skipped = failed = 0
    for src in inputs:
        try:
            with cli_errors(prog):
                r = one(src)
        except SystemExit as e:
            if e.code == 130:
                raise
            failed += 1
            continue
        if r == "skipped":
            skipped += 1
        else:
            done += 1
    print(f"{prog}: {done} done, {skipped} skipped, {failed} failed", file=sys.stderr)
    return 1 if failed else 0
