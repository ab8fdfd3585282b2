"""The ``pipeflow`` command: ``pipeflow train ...`` (more subcommands come with their issues)."""
import argparse
import sys

COMMANDS = {"train": "pipeflow.train"}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = argparse.ArgumentParser(prog="pipeflow")
        parser.add_argument("command", choices=sorted(COMMANDS))
        parser.parse_args(argv[:1] or ["--help"])
    import importlib
    module = importlib.import_module(COMMANDS[argv[0]])
    module.main(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
