"""Classify images with a model-zoo architecture and its weights (the same command as
`pipeflow predict`).

    python scripts/predict.py --model resnet50 --weights IMAGENET1K_V1|DEFAULT|PATH
        [--topk 5] [--json] [--device cuda] [--batch-size N] [--workers N] IMAGE_OR_FOLDER...

Run with --help for every option; pipeflow/predict.py has the details.
"""
import sys

from pipeflow.predict import main

if __name__ == "__main__":
    sys.exit(main())
