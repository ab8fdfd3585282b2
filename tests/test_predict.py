"""``pipeflow predict`` with the real builders (resnet18, resnet20) and checkpoints of randomly
initialised models, on real photographs from ../shared/data/imagenet-samples: the printed
probabilities are those of the model run directly on the same preprocessed images; folders,
damaged, non-image and missing files; --json; a real subprocess."""
import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import pipeflow as pf
import pipeflow.transforms as T
from pipeflow import predict as predict_module
from pipeflow.cli import main
from pipeflow.models import ResNet18_Weights, ResNet20_Weights, resnet18, resnet20
from pipeflow.models._meta import CIFAR10_CATEGORIES, IMAGENET_CATEGORIES

REPO = pathlib.Path(__file__).resolve().parents[1]
IMAGENET = REPO.parent / "shared" / "data" / "imagenet-samples"
# two colour photographs and a grayscale one (converted to RGB by the preprocessing)
PHOTOS = ["n01440764_tench.JPEG", "n01494475_hammerhead.JPEG", "n04090263_rifle.JPEG"]

pytestmark = pytest.mark.skipif(not IMAGENET.is_dir(),
                                reason=f"real photographs not found at {IMAGENET}")


@pytest.fixture(scope="module")
def photos():
    return [str(IMAGENET / name) for name in PHOTOS]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """resnet18 as pf.save writes a state dict; resnet20 as akamaster's trainer saves one
    (under 'state_dict', 'module.' prefixes)."""
    root = tmp_path_factory.mktemp("checkpoints")
    pf.manual_seed(0)
    pf.save(resnet18().state_dict(), root / "resnet18.pt")
    state = resnet20().state_dict()
    pf.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "best_prec1": 91.7},
            root / "resnet20.th")
    return {"resnet18": str(root / "resnet18.pt"), "resnet20": str(root / "resnet20.th")}


def run(capsys, *argv):
    """(exit status, stdout, stderr) of ``pipeflow predict ARGV``."""
    code = main(["predict", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = run(capsys, "--json", *argv)
    return code, json.loads(out), err


def direct_probabilities(model, paths, preprocess):
    """The model run directly on the preprocessed images, the command bypassed."""
    batch = pf.stack([preprocess.transforms()(T.decode(p)) for p in paths])
    with pf.no_grad():
        return pf.softmax(model.eval()(batch), dim=1).numpy()


def assert_predictions_match(images, probabilities, categories, topk):
    for image, p in zip(images, probabilities):
        top = np.argsort(-p, kind="stable")[:topk]
        got = image["predictions"]
        assert [g["index"] for g in got] == top.tolist()
        np.testing.assert_allclose([g["probability"] for g in got], p[top], rtol=1e-5,
                                   atol=1e-7)
        assert [g["label"] for g in got] == [categories[i] for i in top]


def test_imagenet_probabilities_are_the_models_own(capsys, photos, checkpoints):
    code, doc, err = run_json(capsys, "--model", "resnet18", "--weights",
                              checkpoints["resnet18"], "--topk", 5, *photos)
    assert code == 0, err
    assert doc["model"] == "resnet18" and doc["weights"] == checkpoints["resnet18"]
    assert [image["path"] for image in doc["images"]] == photos
    model = resnet18(weights=checkpoints["resnet18"])
    expected = direct_probabilities(model, photos, ResNet18_Weights.DEFAULT.preprocess)
    assert_predictions_match(doc["images"], expected, IMAGENET_CATEGORIES, 5)


def test_cifar_table_with_class_names(capsys, photos, checkpoints):
    code, out, _ = run(capsys, "--model", "resnet20", "--weights", checkpoints["resnet20"],
                       "--topk", 3, *photos[:2])
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == photos[0] and lines[4] == photos[1] and len(lines) == 8
    model = resnet20(weights=checkpoints["resnet20"])
    p = direct_probabilities(model, photos[:1], ResNet20_Weights.DEFAULT.preprocess)[0]
    best = int(np.argmax(p))
    assert lines[1].split() == ["1.", f"{p[best]:.2%}", *CIFAR10_CATEGORIES[best].split(),
                                f"({best})"]


def test_workers_and_batch_size_leave_results_unchanged(capsys, photos, checkpoints):
    args = ("--model", "resnet20", "--weights", checkpoints["resnet20"], *photos)
    _, alone, _ = run_json(capsys, "--workers", 0, "--batch-size", 1, *args)
    _, pooled, _ = run_json(capsys, "--workers", 2, "--batch-size", 2, *args)
    for a, b in zip(alone["images"], pooled["images"]):
        assert [g["index"] for g in a["predictions"]] == [g["index"] for g in b["predictions"]]
        np.testing.assert_allclose([g["probability"] for g in a["predictions"]],
                                   [g["probability"] for g in b["predictions"]], rtol=1e-5)


def test_folder_is_searched_recursively_in_sorted_order(capsys, tmp_path, photos,
                                                        checkpoints):
    (tmp_path / "b").mkdir()
    shutil.copy(photos[0], tmp_path / "b" / "fish.JPEG")
    shutil.copy(photos[1], tmp_path / "a.jpg")
    shutil.copy(photos[2], tmp_path / "c.JPG")
    (tmp_path / "notes.txt").write_text("not an image; skipped in a folder")
    code, doc, _ = run_json(capsys, "--model", "resnet20", "--weights",
                            checkpoints["resnet20"], tmp_path)
    assert code == 0
    assert [image["path"] for image in doc["images"]] == \
        [str(tmp_path / "a.jpg"), str(tmp_path / "b" / "fish.JPEG"), str(tmp_path / "c.JPG")]


def test_bad_files_are_reported_and_the_rest_still_run(capsys, tmp_path, photos,
                                                       checkpoints):
    damaged = tmp_path / "damaged.jpg"
    damaged.write_bytes(pathlib.Path(photos[0]).read_bytes()[:3000])
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    missing = tmp_path / "missing.jpg"
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [photos[0], damaged, text, missing, empty, photos[1]]
    code, doc, err = run_json(capsys, "--model", "resnet20", "--weights",
                              checkpoints["resnet20"], "--batch-size", 2, *args)
    assert code == 1
    images = doc["images"]
    assert [image["path"] for image in images] == list(map(str, args))
    assert "predictions" in images[0] and "predictions" in images[5]
    assert "truncated" in images[1]["error"]
    assert "cannot identify image" in images[2]["error"]
    assert images[3]["error"] == "no such file or directory"
    assert images[4]["error"] == "no image files in this folder"
    for bad in (damaged, text, missing, empty):
        assert f"{bad}: " in err
    model = resnet20(weights=checkpoints["resnet20"])
    expected = direct_probabilities(model, [photos[0], photos[1]],
                                    ResNet20_Weights.DEFAULT.preprocess)
    assert_predictions_match([images[0], images[5]], expected, CIFAR10_CATEGORIES, 5)


def test_architecture_without_published_weights_gets_indices(capsys, monkeypatch, photos,
                                                            checkpoints):
    monkeypatch.setattr(predict_module, "get_model_weights", lambda builder: None)
    code, doc, _ = run_json(capsys, "--model", "resnet20", "--weights",
                            checkpoints["resnet20"], "--topk", 2, photos[0])
    assert code == 0
    model = resnet20(weights=checkpoints["resnet20"])
    expected = direct_probabilities(model, photos[:1], predict_module.IMAGENET_PREPROCESS)
    assert_predictions_match(doc["images"], expected, [None] * 10, 2)


def test_usage_and_weights_errors(capsys, tmp_path, monkeypatch, photos):
    with pytest.raises(SystemExit) as exit_:
        run(capsys, "--model", "resnet9000", photos[0])
    assert exit_.value.code == 2 and "unknown model 'resnet9000'" in capsys.readouterr().err
    code, _, err = run(capsys, "--model", "resnet20", "--weights", tmp_path / "nope.th",
                       photos[0])
    assert code == 2 and "nope.th" in err
    monkeypatch.setenv("PIPEFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PIPEFLOW_OFFLINE", "1")
    code, _, err = run(capsys, "--model", "resnet20", photos[0])  # DEFAULT, not cached
    entry = ResNet20_Weights.DEFAULT
    assert code == 2 and entry.url in err
    assert str(tmp_path / "home" / "checkpoints" / entry.file_name) in err


def test_as_a_subprocess(tmp_path, photos, checkpoints):
    missing = tmp_path / "missing.jpg"
    done = subprocess.run(
        [sys.executable, "-m", "pipeflow.cli", "predict", "--model", "resnet20",
         "--weights", checkpoints["resnet20"], "--json", "--topk", "1", photos[0], missing],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert len(doc["images"][0]["predictions"]) == 1
    assert doc["images"][1] == {"path": str(missing), "error": "no such file or directory"}
    assert f"{missing}: no such file or directory" in done.stderr


@pytest.mark.cuda
@pytest.mark.skipif(not pf.cuda.is_available(), reason="needs CuPy and an NVIDIA GPU")
def test_cuda_gives_the_cpu_probabilities(capsys, photos, checkpoints):
    args = ("--model", "resnet20", "--weights", checkpoints["resnet20"], *photos)
    _, cpu, _ = run_json(capsys, *args)
    code, gpu, err = run_json(capsys, "--device", "cuda", *args)
    assert code == 0, err
    for a, b in zip(cpu["images"], gpu["images"]):
        np.testing.assert_allclose([g["probability"] for g in a["predictions"]],
                                   [g["probability"] for g in b["predictions"]], rtol=1e-3,
                                   atol=1e-5)
