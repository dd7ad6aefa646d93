"""bitsr: command-line entry point. Each subcommand lives in its own module exposing
``main(argv, prog)``, imported only when that subcommand runs."""
from __future__ import annotations

import importlib
import sys

# subcommand -> (module under bitsr.cli, one line of help; tests hold it equal to the module's)
COMMANDS = {
    "extract": ("extract", "dump the bitstream priors of an HEVC file."),
    "upscale": ("upscale", "compressed video in, upscaled video out."),
    "prepare": ("prepare", "make HR/LR training pairs (MATLAB-bicubic LR encoded with x265 or x264)."),
    "train": ("train", "train a video SR model from a YAML config."),
    "models": ("models", "list the shipped weights."),
}


def _usage() -> str:
    lines = ["usage: bitsr COMMAND [options]", "",
             "Bitstream-guided super-resolution of compressed video.", "", "commands:"]
    for name, (_, doc) in COMMANDS.items():
        lines.append(f"  {name:<10} {doc}")
    lines.append("")
    lines.append("Run 'bitsr COMMAND --help' for the options of a command.")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from .. import __version__

        print(f"bitsr {__version__}")
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"bitsr: error: unknown command {cmd!r} (choose from {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    mod = importlib.import_module(f"bitsr.cli.{COMMANDS[cmd][0]}")
    return mod.main(rest, prog=f"bitsr {cmd}")


if __name__ == "__main__":
    raise SystemExit(main())
