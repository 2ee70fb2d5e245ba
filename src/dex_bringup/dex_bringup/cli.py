"""``dexgrasp``: the one console command of the pip path.

Subcommands::

    dexgrasp demo                 headless demo (see dex_bringup.demo)
    dexgrasp launch sim|real [name:=value ...] [--print]
                                  start the node graph (config/graph/dexgrasp.yaml) as processes
    dexgrasp episode [--prompt P] [--dry-run] [--reset-seed N] [--confirm] [--json] ...
                                  send one ExecuteGrasp goal to the orchestrator, print feedback + result
    dexgrasp build-interfaces     build src/dex_interfaces into the active venv (source checkout)
"""

from __future__ import annotations

import subprocess
import sys


def _build_interfaces(argv: list[str]) -> int:
    from dex_description.paths import repo_root

    root = repo_root()
    if root is None:
        print("error: build-interfaces needs a source checkout (src/dex_interfaces)", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, str(root / "src" / "dex_interfaces" / "build_in_venv.py"), *argv])


COMMANDS = {
    "demo": ("dex_bringup.demo", "main"),
    "launch": ("dex_bringup.launcher", "main"),
    "episode": ("dex_bringup.episode_client", "main"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "build-interfaces":
        return _build_interfaces(rest)
    if cmd not in COMMANDS:
        print(f"error: unknown command '{cmd}'\n{__doc__}", file=sys.stderr)
        return 2
    module, fn = COMMANDS[cmd]
    import importlib

    from dex_description.errors import DescriptionError

    try:
        return getattr(importlib.import_module(module), fn)(rest)
    except DescriptionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
