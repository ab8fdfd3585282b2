"""The main job, ``pipeflow train``: train a CNN on a real dataset through the DataLoader,
evaluate it on a held-out split, save a checkpoint, and reload it to predict a few samples.
The default data are the 1,797 handwritten digits scikit-learn ships (no download)."""
import argparse
import os
import time

import numpy as np

import pipeflow as pf
from pipeflow import nn
from pipeflow.data import DataLoader, random_split
from pipeflow.datasets import Digits
from pipeflow.models import MLP, SmallCNN
from pipeflow.progress import Progress

MODELS = {"cnn": SmallCNN, "mlp": MLP}


def add_arguments(parser):
    parser.add_argument("--model", choices=sorted(MODELS), default="cnn")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="pipeflow-digits.pt",
                        help="checkpoint path (a torch-compatible zip file)")
    parser.add_argument("--show", type=int, default=8, help="test samples to predict at the end")


def evaluate(model, loader):
    """Accuracy of `model` over `loader`, in eval mode and without autograd."""
    model.eval()
    correct = total = 0
    with pf.no_grad():
        for images, labels in loader:
            correct += int((model(images).argmax(1) == labels).sum().item())
            total += len(labels)
    return correct / total


def train_epoch(model, loader, optimizer, epoch, epochs):
    model.train()
    with Progress(len(loader), f"epoch {epoch}/{epochs}") as bar:
        for images, labels in loader:
            loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            bar.update(loss=loss.item())


def run(args):
    pf.manual_seed(args.seed)
    dataset = Digits()
    test_size = int(round(len(dataset) * args.test_fraction))
    train_set, test_set = random_split(dataset, [len(dataset) - test_size, test_size],
                                       seed=args.seed)
    loader_args = dict(batch_size=args.batch_size, num_workers=args.workers, device=args.device)
    train_loader = DataLoader(train_set, shuffle=True, seed=args.seed, **loader_args)
    test_loader = DataLoader(test_set, **loader_args)
    print(f"digits: {len(train_set)} training and {len(test_set)} held-out images, "
          f"model {args.model} on {args.device}")

    model = MODELS[args.model]().to(args.device)
    optimizer = pf.optim.Adam(model.parameters(), lr=args.lr)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        train_epoch(model, train_loader, optimizer, epoch, args.epochs)
        print(f"epoch {epoch}: held-out accuracy {evaluate(model, test_loader):.2%}")
    accuracy = evaluate(model, test_loader)
    print(f"trained in {time.perf_counter() - start:.1f}s; held-out accuracy {accuracy:.2%}")

    pf.save({"model": args.model, "state_dict": model.state_dict(),
             "optimizer": optimizer.state_dict(), "epochs": args.epochs,
             "accuracy": accuracy}, args.output)
    print(f"saved checkpoint to {os.path.abspath(args.output)}")
    predict_from_checkpoint(args.output, test_set, args.show, args.device)
    return accuracy


def predict_from_checkpoint(path, dataset, count, device):
    """Rebuild the model from the checkpoint alone and predict the first samples."""
    checkpoint = pf.load(path, map_location=device)
    model = MODELS[checkpoint["model"]]().to(device)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    samples = [dataset[i] for i in range(min(count, len(dataset)))]
    images = pf.stack([image for image, _ in samples]).to(device)
    with pf.no_grad():
        probabilities = model(images).softmax(1).cpu().numpy()
    print(f"reloaded {path}: predictions for {len(samples)} held-out images")
    for (_, label), p in zip(samples, probabilities):
        guess = int(np.argmax(p))
        print(f"  label {label}  predicted {guess}  p={p[guess]:.3f}"
              f"{'' if guess == label else '  (wrong)'}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="pipeflow train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    run(parser.parse_args(argv))
    return 0
