"""Output paths checked before any work starts: a run that would fail at its first write (a
missing or unwritable folder, an output that is the input or an existing file) fails at once,
with an error naming the path, the same wording wherever bitsr writes a file."""
from __future__ import annotations

import errno
import os
import re
import tempfile
from pathlib import Path
from typing import Iterable


def is_image_sequence(path: str | os.PathLike) -> bool:
    """A frame pattern such as ``frames/%06d.png`` (one PNG per frame, numbered from 1)."""
    p = Path(path)
    return p.suffix.lower() == ".png" and re.search(r"%0?\d*d", p.name) is not None


def first_file(path: str | os.PathLike) -> Path:
    """The file an output starts with: itself, or a frame pattern's first frame."""
    p = Path(path)
    return p.with_name(p.name % 1) if is_image_sequence(p) else p


def check_output(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (),
                 overwrite: bool = True) -> Path:
    """The output path, checked: its folder exists and takes new files, it is not a folder, not
    one of ``inputs``, and (unless ``overwrite``) not an existing file.

    Raises FileNotFoundError / NotADirectoryError / PermissionError for the folder,
    IsADirectoryError, ValueError (output is an input), FileExistsError; ``filename`` names the
    path in question."""
    p = first_file(path)
    folder = p.parent
    if not folder.exists():
        raise FileNotFoundError(errno.ENOENT, "output folder does not exist", str(folder))
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "output folder is not a folder", str(folder))
    if p.is_dir():
        raise IsADirectoryError(errno.EISDIR, "output is a folder", str(p))
    if p.exists():
        for src in inputs:
            if os.path.exists(src) and os.path.samefile(p, src):
                raise ValueError(f"{p}: output would overwrite the input")
        if not overwrite:
            raise FileExistsError(errno.EEXIST, "output exists", str(p))
    try:  # a real probe: permission bits do not tell root, read-only mounts or quotas
        with tempfile.TemporaryFile(dir=folder, prefix=".bitsr-probe-"):
            pass
    except OSError as e:
        raise PermissionError(e.errno or errno.EACCES, "cannot write in the output folder", str(folder)) from e
    return p
