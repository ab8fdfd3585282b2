"""Look at an image dataset: images per class, a histogram of image sizes, and a contact
sheet PNG of random samples with their labels.

    python scripts/inspect_dataset.py DATASET [--sheet contact.png] [--samples 64] [--verify]

DATASET is an Arrow shard folder (written by `pipeflow preprocess`; --verify hashes every
shard against the manifest) or anything preprocess reads: an ImageFolder, a tar of one,
CIFAR or MNIST (so a source can be checked before it is converted).
"""
import argparse
import collections
import io
import os
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeflow import preprocess, shards

SIDE_BINS = [0, 32, 64, 128, 256, 512, 1024, 2048, 4096]


class _Shards:
    """An Arrow shard folder, through ArrowShards."""

    def __init__(self, root, verify):
        from pipeflow.datasets.arrow_shards import ArrowShards
        self.ds = ArrowShards(root, verify=verify)
        self.classes, self.labels = self.ds.classes, self.ds.targets
        m = self.ds.manifest
        total = sum(s["bytes"] for s in m["shards"])
        self.summary = (f"{root}: {len(self.ds)} images, {len(self.classes)} classes, "
                        f"{len(m['shards'])} shards, {total / 2**20:.1f} MiB, "
                        f"{m['skipped']} skipped when written")
        self.bad = [(b["path"], b["error"]) for b in m["bad"]]
        self.bad_title = "images left out when the shards were written"
        self.sizes_stored = "width" in self.ds._columns  # no decoding needed

    def sizes(self, indices):
        if "width" in self.ds._columns:
            return list(zip(self.ds.column("width")[indices].tolist(),
                            self.ds.column("height")[indices].tolist()))
        return [Image.open(io.BytesIO(b)).size for b in self.ds.read_bytes(indices)]

    def image(self, index):
        return Image.open(io.BytesIO(self.ds.read_bytes([index])[0]))


class _Source:
    """Anything `pipeflow preprocess` reads."""

    def __init__(self, path, kind, split):
        self.source = preprocess.scan_source(path, kind, split)
        self.classes = self.source.classes
        self.labels = np.array([it.label for it in self.source.items], dtype=np.int64)
        self.summary = (f"{path}: {len(self.labels)} images, {len(self.classes)} classes "
                        f"({self.source.kind})")
        self.bad = []
        self.bad_title = "images whose header can't be read"
        self.sizes_stored = False

    def sizes(self, indices):
        out = []
        for i in indices:
            item = self.source.items[i]
            try:
                if item.ref[0] == "pixels":
                    shape = item.ref[2]
                    out.append((shape[1], shape[0]))
                else:
                    out.append(Image.open(io.BytesIO(preprocess._read(item.ref))).size)
            except Exception as e:
                self.bad.append((self.source.display(item.key), f"{type(e).__name__}: {e}"))
        return out

    def image(self, index):
        return Image.open(io.BytesIO(preprocess.read_bytes(self.source.items[index].ref)))


def _bar(n, most, width=40):
    return "#" * max(1 if n else 0, round(width * n / most)) if most else ""


def class_counts(labels, classes):
    counts = np.bincount(labels, minlength=len(classes)) if len(labels) else \
        np.zeros(len(classes), np.int64)
    return {name: int(n) for name, n in zip(classes, counts)}


def print_counts(counts, out):
    most = max(counts.values(), default=0)
    width = max((len(c) for c in counts), default=5)
    print(f"\nimages per class ({len(counts)} classes):", file=out)
    for name, n in counts.items():
        print(f"  {name:<{width}} {n:>8}  {_bar(n, most)}", file=out)


def print_sizes(sizes, out, sampled_from=None):
    note = f", a random sample of {len(sizes)} of {sampled_from}" if sampled_from else ""
    print(f"\nimage sizes (width x height{note}):", file=out)
    if not sizes:
        print("  (none)", file=out)
        return
    sides = np.array([max(w, h) for w, h in sizes])
    bins = np.digitize(sides, SIDE_BINS[1:], right=True)
    hist = np.bincount(bins, minlength=len(SIDE_BINS))
    most = int(hist.max())
    print("  longer side:", file=out)
    for b, n in enumerate(hist):
        if n:
            label = ("1-32" if b == 0 else f">{SIDE_BINS[-1]}" if b == len(SIDE_BINS) - 1
                     else f"{SIDE_BINS[b] + 1}-{SIDE_BINS[b + 1]}")
            print(f"    {label:>11} px {int(n):>8}  {_bar(int(n), most)}", file=out)
    common = collections.Counter(sizes).most_common(10)
    print(f"  most common ({len(set(sizes))} distinct; min {sides.min()}, median "
          f"{int(np.median(sides))}, max {sides.max()} px on the longer side):", file=out)
    for (w, h), n in common:
        print(f"    {w:>5} x {h:<5} {n:>8}", file=out)


def contact_sheet(dataset, indices, path, columns=8, thumb=96):
    """A PNG grid of the images at `indices`, each with its class name under it."""
    font = ImageFont.load_default()
    text_h = 14
    rows = max(1, -(-len(indices) // columns))
    cols = max(1, min(columns, len(indices)))
    pad = 4
    sheet = Image.new("RGB", (cols * (thumb + pad) + pad, rows * (thumb + text_h + pad) + pad),
                      (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    for n, i in enumerate(indices):
        x = pad + (n % cols) * (thumb + pad)
        y = pad + (n // cols) * (thumb + text_h + pad)
        label = dataset.classes[int(dataset.labels[i])]
        try:
            image = dataset.image(i)
            image.draft("RGB", (thumb, thumb))
            image = image.convert("RGB")
            scale = thumb / max(image.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.BICUBIC)
            sheet.paste(image, (x + (thumb - size[0]) // 2, y + (thumb - size[1]) // 2))
        except Exception:  # a broken image: a red cell
            draw.rectangle([x, y, x + thumb - 1, y + thumb - 1], fill=(120, 0, 0))
            label = f"{label} (bad)"
        text = label
        if draw.textlength(text, font=font) > thumb:
            while text and draw.textlength(text + "..", font=font) > thumb:
                text = text[:-1]
            text += ".."
        draw.text((x, y + thumb + 1), text, fill=(230, 230, 230), font=font)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    sheet.save(path, "PNG")
    return sheet.size


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="an Arrow shard folder, or a source preprocess reads")
    parser.add_argument("--sheet", default="contact_sheet.png",
                        help="where to write the contact sheet PNG (default contact_sheet.png)")
    parser.add_argument("--samples", type=int, default=64, help="images on the sheet")
    parser.add_argument("--columns", type=int, default=8, help="images per row of the sheet")
    parser.add_argument("--thumb", type=int, default=96, help="cell size in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random samples")
    parser.add_argument("--max-sizes", type=int, default=20000,
                        help="measure the sizes of at most this many images (a random "
                             "sample beyond; the width/height columns make shards free)")
    parser.add_argument("--verify", action="store_true",
                        help="shards: hash every shard against the manifest (default: sizes)")
    parser.add_argument("--format", choices=preprocess.KINDS, default="auto",
                        help="a source's format (see pipeflow preprocess)")
    parser.add_argument("--split", default="train", help="CIFAR/MNIST split")
    args = parser.parse_args(argv)
    out = sys.stdout
    try:
        if os.path.exists(os.path.join(args.dataset, shards.MANIFEST)) or \
                (os.path.isdir(args.dataset) and
                 any(n.startswith("manifest.part-") for n in os.listdir(args.dataset))):
            dataset = _Shards(args.dataset, True if args.verify else "fast")
        else:
            dataset = _Source(args.dataset, args.format, args.split)
    except (preprocess.PreprocessError, shards.ManifestError, shards.ShardError,
            FileNotFoundError) as e:
        print(f"inspect_dataset: error: {e}", file=sys.stderr)
        return 1
    print(dataset.summary, file=out)
    n = len(dataset.labels)
    print_counts(class_counts(dataset.labels, dataset.classes), out)
    rng = np.random.default_rng(args.seed)
    if n > args.max_sizes and not dataset.sizes_stored:
        measured = np.sort(rng.choice(n, args.max_sizes, replace=False))
        print_sizes(dataset.sizes(measured.tolist()), out, sampled_from=n)
    else:
        print_sizes(dataset.sizes(list(range(n))), out)
    if dataset.bad:
        print(f"\n{len(dataset.bad)} {dataset.bad_title}:", file=out)
        for path, error in dataset.bad[:50]:
            print(f"  {path}: {error}", file=out)
    if n and args.samples > 0:
        picks = np.sort(rng.choice(n, min(args.samples, n), replace=False)).tolist()
        size = contact_sheet(dataset, picks, args.sheet, args.columns, args.thumb)
        print(f"\ncontact sheet: {args.sheet} ({len(picks)} random images, {size[0]}x{size[1]})",
              file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
