"""``pipeflow predict``: classify images with a model-zoo architecture and its weights.

    pipeflow predict --model resnet50 --weights IMAGENET1K_V1 photo.jpg photos/
    pipeflow predict --model resnet20 --weights my_cifar.th --json a.png > out.json

Every image gets the preprocessing its weights were trained with (shorter side resized,
center crop, scaled to [0, 1], normalised); batches go through the DataLoader (images
decoded in --workers processes) and the model, and each image's top-k classes are printed
with their probabilities.

--weights takes a published weights name (IMAGENET1K_V1, DEFAULT; the default) or a
checkpoint path. With a path, the architecture's DEFAULT weights give the preprocessing and
the class names; an architecture without published weights gets ImageNet's preprocessing
and class indices for names.

A folder is searched recursively (symlinks followed, as ImageFolder does) for image files
(.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp, any case), in sorted path order; a file
named on the command line is read whatever its extension. A missing path, or a file that
is not a readable image, is reported on stderr (and as an error entry with --json) and the
other images still run; the exit status is then 1 (2 when the model or its weights can't
be loaded).

--json prints one document once all are done, images in argument order:
    {"model": ..., "weights": ..., "images": [
        {"path": ..., "predictions": [{"index": 0, "label": "tench", "probability": 0.97}]},
        {"path": ..., "error": "..."}]}
"""
import argparse
import inspect
import json
import os
import sys

import numpy as np

import pipeflow as pf
from pipeflow import hub, models
from pipeflow.data import DataLoader, Dataset
from pipeflow.datasets.folder import is_image_file
from pipeflow.io import CheckpointError
from pipeflow.models._api import Preprocess, WeightsEnum, get_model_weights

# For an architecture with no published weights to take it from.
IMAGENET_PREPROCESS = Preprocess(resize_size=256, crop_size=224)


def builders():
    """The model zoo's builders: pipeflow.models' functions that take a keyword-only
    ``weights``."""
    def takes_weights(fn):
        param = inspect.signature(fn).parameters.get("weights")
        return param is not None and param.kind is inspect.Parameter.KEYWORD_ONLY
    return {name: fn for name, fn in sorted(vars(models).items())
            if inspect.isfunction(fn) and not name.startswith("_") and takes_weights(fn)}


def find_images(args):
    """(path, error or None) for every image the arguments name, folders expanded."""
    for arg in args:
        if os.path.isdir(arg):
            found = sorted(os.path.join(root, name)
                           for root, _, names in os.walk(arg, followlinks=True)
                           for name in names if is_image_file(name))
            if not found:
                yield arg, "no image files in this folder"
            yield from ((path, None) for path in found)
        elif os.path.exists(arg):
            yield arg, None
        else:
            yield arg, "no such file or directory"


class ImageFiles(Dataset):
    """Images preprocessed for the model; (image, "") or, for a file that can't be decoded,
    (zeros, the reason): one bad file must not stop the loader and the other images."""

    def __init__(self, paths, preprocess):
        self.paths, self.transform = paths, preprocess.transforms()
        self.blank_shape = (3, preprocess.crop_size, preprocess.crop_size)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            image = pf.transforms.decode(self.paths[i])
        except Exception as e:  # PIL raises many kinds for damaged files (OSError, SyntaxError..)
            return pf.zeros(*self.blank_shape), f"cannot read image: {e}"
        return self.transform(image), ""


def predict(model, dataset, topk, batch_size=32, workers=0, device="cpu"):
    """`model` (in eval mode, on `device`) on `dataset`'s images; per image, in order:
    [(class index, probability)] for its `topk` classes, most probable first, or the reason
    it could not be read (a str)."""
    device = pf.device(device)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, device=device,
                        pin_memory=device.type == "cuda")
    with pf.no_grad():
        for images, errors in loader:
            probabilities = pf.softmax(model(images), dim=1).cpu().numpy()
            for p, error in zip(probabilities, errors):
                top = np.argsort(-p, kind="stable")[:topk]
                yield error or [(int(i), float(p[i])) for i in top]


def _label(categories, index):
    return categories[index] if categories and index < len(categories) else None


def _print_table(path, predictions, categories):
    print(path)
    for rank, (index, probability) in enumerate(predictions, 1):
        label = _label(categories, index)
        name = f"{label} ({index})" if label is not None else f"class {index}"
        print(f"  {rank:>2}. {probability:7.2%}  {name}")


def load_model(builder, weights, device="cpu"):
    """(model in eval mode on `device`, its Preprocess, its class names or None, the weights'
    name or path) for a builder and a ``--weights`` value."""
    weights_enum = get_model_weights(builder)
    weights = weights_enum.resolve(weights) if weights_enum else weights
    if isinstance(weights, WeightsEnum):
        published = weights
    else:  # a checkpoint file: preprocessed and named as the published weights are
        published = weights_enum.__members__.get("DEFAULT") if weights_enum else None
    model = builder(weights=weights).to(device).eval()
    if published is None:
        return model, IMAGENET_PREPROCESS, None, os.fspath(weights)
    return (model, published.preprocess, published.meta.get("categories"),
            weights.name if weights is published else os.fspath(weights))


def run(args, model, preprocess, categories, weights_name):
    """Predict and print; 1 if any image failed, else 0."""
    entries = list(find_images(args.images))
    readable = [path for path, error in entries if error is None]
    results = predict(model, ImageFiles(readable, preprocess), args.topk, args.batch_size,
                      args.workers, args.device)
    report, failed = [], 0
    for path, error in entries:
        outcome = error or next(results)
        if isinstance(outcome, str):
            failed += 1
            print(f"pipeflow predict: {path}: {outcome}", file=sys.stderr)
            report.append({"path": path, "error": outcome})
        elif args.json:
            report.append({"path": path, "predictions": [
                {"index": i, "label": _label(categories, i), "probability": p}
                for i, p in outcome]})
        else:
            _print_table(path, outcome, categories)
    results.close()  # shuts the loader's workers down now
    if args.json:
        json.dump({"model": args.model, "weights": weights_name, "images": report},
                  sys.stdout, indent=2)
        print()
    return 1 if failed else 0


def add_arguments(parser):
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER")
    parser.add_argument("--model", required=True, help="architecture, e.g. resnet50")
    parser.add_argument("--weights", default="DEFAULT",
                        help="published weights (IMAGENET1K_V1, DEFAULT) or a checkpoint path")
    parser.add_argument("--topk", type=int, default=5, help="classes shown per image")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2,
                        help="DataLoader processes decoding images (0: in this process)")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="pipeflow predict", description=__doc__.splitlines()[0],
        epilog="\n\n".join(__doc__.split("\n\n")[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.topk < 1 or args.batch_size < 1 or args.workers < 0:
        parser.error("--topk and --batch-size must be at least 1, --workers at least 0")
    builder = builders().get(args.model)
    if builder is None:
        parser.error(f"unknown model {args.model!r}; choose from {', '.join(builders())}")
    try:
        loaded = load_model(builder, args.weights, args.device)
    except (ValueError, OSError, CheckpointError, hub.IntegrityError) as e:
        print(f"pipeflow predict: error: {e}", file=sys.stderr)
        return 2
    return run(args, *loaded)

if __name__ == "__main__":
    sys.exit(main())
