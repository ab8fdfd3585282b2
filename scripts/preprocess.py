"""Convert an ImageFolder, CIFAR, MNIST or a tar of images into Arrow shards that
pipeflow.datasets.ArrowShards memory-maps (the same command as `pipeflow preprocess`).

    python scripts/preprocess.py SOURCE OUTPUT [--max-side 512] [--quality 90]
        [--shard-size 256MB] [--num-shards N --shard-index I] [--skip-bad] [--workers N]
    python scripts/preprocess.py --merge OUTPUT

Run with --help for every option; pipeflow/preprocess.py has the details.
"""
import sys

from pipeflow.preprocess import main

if __name__ == "__main__":
    sys.exit(main())
