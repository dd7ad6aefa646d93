"""bitsr: command-line entry point. Each subcommand lives in its own module exposing
``main(argv)`` and a one-line ``HELP``."""
from __future__ import annotations

import importlib
import sys

# subcommand -> module under bitsr.cli
COMMANDS = {
    "extract": "extract",
    "upscale": "upscale",
    "prepare": "prepare",
    "train": "train",
}


def _usage() -> str:
    lines = ["usage: bitsr COMMAND [options]", "", "Bitstream-guided super-resolution of compressed video.", "", "commands:"]
    for name, mod in COMMANDS.items():
        doc = (importlib.import_module(f"bitsr.cli.{mod}").__doc__ or "").strip().splitlines()
        lines.append(f"  {name:<10} {doc[0].split(':', 1)[-1].strip() if doc else ''}")
    lines.append("")
    lines.append("Run 'bitsr COMMAND --help' for the options of a command.")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"bitsr: error: unknown command {cmd!r} (choose from {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    mod = importlib.import_module(f"bitsr.cli.{COMMANDS[cmd]}")
    return mod.main(rest, prog=f"bitsr {cmd}")


if __name__ == "__main__":
    raise SystemExit(main())
