"""The ``pipeflow`` command: ``pipeflow train ...``, ``pipeflow preprocess ...``,
``pipeflow predict ...``."""
import argparse
import sys

COMMANDS = {"train": "pipeflow.train", "preprocess": "pipeflow.preprocess",
            "predict": "pipeflow.predict"}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = argparse.ArgumentParser(prog="pipeflow")
        parser.add_argument("command", choices=sorted(COMMANDS))
        parser.parse_args(argv[:1] or ["--help"])
    import importlib
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
