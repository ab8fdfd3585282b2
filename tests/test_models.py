"""The model zoo against torch references of torchvision's and akamaster's definitions
(tests/reference_models.py): state_dict keys, shapes and order; checkpoints torch saved in
its zip and legacy formats, loaded through the builders' ``weights=``; eval logits and one
training step's gradients; the published weights entries; CIFAR checkpoints in akamaster's
own layout."""
import subprocess
import sys
from collections import OrderedDict
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import pipeflow as pf
import reference_models
from pipeflow import models
from pipeflow.models import weights_loading
from pipeflow.models._api import get_model_weights

CIFAR = {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110"}
SLOW = {"vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "resnet101",
        "resnet152", "wide_resnet50_2"}
ARCHS = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
         for n in reference_models.REFERENCES]


def _input(name, batch=2):
    side = 32 if name in CIFAR else 64  # about the smallest AlexNet takes (63): fast
    return np.random.default_rng(0).standard_normal((batch, 3, side, side)).astype(np.float32)


def _numpy(t):
    return t.detach().cpu().numpy()


@pytest.fixture(scope="module", params=ARCHS)
def pair(request, tmp_path_factory):
    """A seeded torch reference, the zip checkpoint torch saved of it, and the pipeflow model
    its builder made with ``weights=`` that file."""
    name = request.param
    reference = reference_models.build(name)
    path = tmp_path_factory.mktemp(name) / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    model = getattr(models, name)(weights=path)
    yield SimpleNamespace(name=name, reference=reference, model=model, path=path)
    path.unlink()  # a VGG checkpoint is half a gigabyte


def _assert_same_state(model, reference):
    ours, theirs = model.state_dict(), reference.state_dict()
    assert [(k, tuple(v.shape)) for k, v in ours.items()] == \
        [(k, tuple(v.shape)) for k, v in theirs.items()]
    for k, v in ours.items():
        assert str(v.dtype).split(".")[-1] == str(theirs[k].dtype).split(".")[-1], k
        np.testing.assert_array_equal(_numpy(v), theirs[k].numpy(), err_msg=k)


def test_state_dict_keys_shapes_order_and_values_match_torch(pair):
    _assert_same_state(pair.model, pair.reference)


def test_legacy_format_checkpoint_loads_the_same(pair, tmp_path):
    path = tmp_path / f"{pair.name}-legacy.pth"
    torch.save(pair.reference.state_dict(), path, _use_new_zipfile_serialization=False)
    for p in pair.model.parameters():  # so that only the load can make them equal again
        p.detach().zero_()
    pair.model.load_state_dict(pf.load(path))
    path.unlink()
    _assert_same_state(pair.model, pair.reference)


def _assert_eval_logits_match(model, reference, x, device="cpu"):
    model.eval(), reference.eval()
    with pf.no_grad():
        ours = _numpy(model(pf.tensor(x, device=device)))
    with torch.no_grad():
        theirs = reference(torch.tensor(x)).numpy()
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()


def test_eval_logits_match_torch(pair):
    _assert_eval_logits_match(pair.model, pair.reference, _input(pair.name))


def _assert_training_step_matches(model, reference, x, rtol, device="cpu"):
    """One cross-entropy step in training mode (batch statistics, running stats updated)
    gives both the same gradients, to `rtol` of the largest gradient (a conv's bias before
    a BatchNorm has a zero gradient: only rounding noise to compare). Dropout is off on
    both: its masks can't match."""
    for m in (*model.modules(), *reference.modules()):
        if isinstance(m, (pf.nn.Dropout, torch.nn.Dropout)):
            m.p = 0.0
    model.train(), reference.train()
    model.zero_grad(), reference.zero_grad()
    labels = np.array([1, 7])
    pf.nn.functional.cross_entropy(model(pf.tensor(x, device=device)),
                                   pf.tensor(labels, device=device)).backward()
    torch.nn.functional.cross_entropy(reference(torch.tensor(x)),
                                      torch.tensor(labels)).backward()
    theirs = {k: p.grad for k, p in reference.named_parameters()}
    scale = max(g.abs().max().item() for g in theirs.values())
    for name, p in model.named_parameters():  # compared by torch: VGG's are 1e8 numbers
        error = (torch.from_numpy(_numpy(p.grad)) - theirs[name]).abs().max().item()
        assert error <= rtol * scale, name
    running = {k: v.numpy() for k, v in reference.state_dict().items() if "running" in k}
    for k, v in model.state_dict().items():
        if k in running:
            np.testing.assert_allclose(_numpy(v), running[k], rtol=rtol, atol=rtol)


def test_weights_entries_describe_the_architecture(pair):
    enum = get_model_weights(getattr(models, pair.name))
    assert enum is not None and "DEFAULT" in enum.__members__
    num_params = sum(p.numel() for p in pair.model.parameters())
    classes = 10 if pair.name in CIFAR else 1000
    for member in enum:
        w = member.value
        assert w.meta["num_params"] == num_params, member
        assert w.meta["categories"] is None or len(w.meta["categories"]) == classes
        assert w.meta["dataset"] == ("CIFAR-10" if pair.name in CIFAR else "ImageNet-1K")
        assert len(w.sha256_prefix) == 8 and int(w.sha256_prefix, 16) >= 0
        assert w.file_name.startswith(pair.name.split("_")[0]) and \
            w.file_name.endswith(f"-{w.sha256_prefix}.th" if pair.name in CIFAR else
                                 f"-{w.sha256_prefix}.pth")
        if pair.name in CIFAR:
            assert w.url.startswith("https://github.com/akamaster/pytorch_resnet_cifar10/")
            assert (w.preprocess.resize_size, w.preprocess.crop_size) == (32, 32)
        else:
            assert w.url.startswith("https://download.pytorch.org/models/")
            assert w.preprocess.crop_size == 224
            assert w.preprocess.resize_size == (232 if member.name == "IMAGENET1K_V2" else 256)


def test_training_step_gradients_match_torch(pair):
    """In float64: deep nets in training mode at batch 2 amplify float32 rounding (resnet152:
    gradients ~1e3, 10% apart in float32, 1e-11 in float64), so float32 is checked below on
    well-conditioned ones. The last test on `pair`: it leaves the models changed."""
    model, reference = pair.model.double(), pair.reference.double()
    _assert_training_step_matches(model, reference, _input(pair.name).astype(np.float64),
                                  rtol=1e-9)
    model.float(), reference.float()


@pytest.mark.parametrize("name", ["resnet18", "resnet20"])
def test_float32_training_step_gradients_match_torch(name):
    reference = reference_models.build(name)
    model = getattr(models, name)()
    model.load_state_dict({k: pf.tensor(v.numpy()) for k, v in reference.state_dict().items()})
    _assert_training_step_matches(model, reference, _input(name), rtol=1e-4)


@pytest.mark.parametrize("builder, member, file_name, resize, acc1, acc5", [
    ("alexnet", "IMAGENET1K_V1", "alexnet-owt-7be5be79.pth", 256, 56.522, 79.066),
    ("vgg16_bn", "IMAGENET1K_V1", "vgg16_bn-6c64b313.pth", 256, 73.360, 91.516),
    ("resnet50", "IMAGENET1K_V1", "resnet50-0676ba61.pth", 256, 76.130, 92.862),
    ("resnet50", "DEFAULT", "resnet50-11ad3fa6.pth", 232, 80.858, 95.434),
    ("resnext50_32x4d", "IMAGENET1K_V2", "resnext50_32x4d-1a0047aa.pth", 232, 81.198, 95.340),
    ("resnet56", "DEFAULT", "resnet56-4bfd9763.th", 32, 93.39, None),
])
def test_published_facts(builder, member, file_name, resize, acc1, acc5):
    w = get_model_weights(getattr(models, builder))[member]
    assert w.file_name == file_name and w.preprocess.resize_size == resize
    assert w.meta["metrics"] == ({"acc@1": acc1, "acc@5": acc5} if acc5 else {"acc@1": acc1})


def test_vgg16_feature_weights_normalise_as_the_original(monkeypatch):
    w = models.VGG16_Weights.IMAGENET1K_FEATURES
    assert w.meta["categories"] is None and np.isnan(w.meta["metrics"]["acc@1"])
    assert w.preprocess.std == (1 / 255,) * 3 and w.preprocess.mean[0] == 0.48235
    loaded = []  # no classes to check against: the model builds, then the file loads
    monkeypatch.setattr(weights_loading, "load_weights", lambda *args: loaded.append(args))
    model = models.vgg16(weights="IMAGENET1K_FEATURES")
    assert loaded == [(model, w, True)] and model.classifier[-1].out_features == 1000


def test_a_weights_entry_prints_without_its_class_names():
    assert "tench" not in repr(models.ResNet18_Weights.IMAGENET1K_V1.value)


def test_akamaster_checkpoint_loads_as_published(tmp_path):
    """Their files: the legacy format, {'state_dict', 'best_prec1'}, DataParallel's
    'module.' prefix, and BatchNorm without num_batches_tracked (torch < 0.4.1)."""
    reference = reference_models.build("resnet20", seed=3)
    state = OrderedDict((f"module.{k}", v) for k, v in reference.state_dict().items()
                        if not k.endswith("num_batches_tracked"))
    path = tmp_path / "resnet20-12fca82f.th"
    torch.save({"state_dict": state, "best_prec1": torch.tensor(91.73)}, path,
               _use_new_zipfile_serialization=False)
    model = models.resnet20(weights=path)
    _assert_eval_logits_match(model, reference, _input("resnet20", batch=4))
    assert all(m.num_batches_tracked.item() == 0 for m in model.modules()
               if isinstance(m, pf.nn.BatchNorm2d))  # torch keeps the fresh layer's count


def test_batchnorm_fills_num_batches_tracked_only_for_old_versions_as_torch():
    def state(module):
        return OrderedDict((k, v) for k, v in module.state_dict().items()
                           if not k.endswith("num_batches_tracked"))
    ours, theirs = pf.nn.Sequential(pf.nn.BatchNorm2d(3)), torch.nn.Sequential(
        torch.nn.BatchNorm2d(3))
    for version, fills in ((None, True), (1, True), (2, False)):
        sd, tsd = state(ours), state(theirs)
        if version is not None:
            sd._metadata = tsd._metadata = OrderedDict([("0", {"version": version})])
        if fills:
            assert not ours.load_state_dict(sd).missing_keys
            assert not theirs.load_state_dict(tsd).missing_keys
        else:
            with pytest.raises(RuntimeError, match="num_batches_tracked"):
                ours.load_state_dict(sd)
            with pytest.raises(RuntimeError, match="num_batches_tracked"):
                theirs.load_state_dict(tsd)


def test_published_weights_fix_the_classes_and_the_architecture():
    with pytest.raises(ValueError, match="1000 classes"):
        models.resnet18(weights="IMAGENET1K_V1", num_classes=10)
    with pytest.raises(ValueError, match="ResNet18_Weights"):
        models.resnet18(weights=models.ResNet50_Weights.DEFAULT)
    with pytest.raises(ValueError, match="ResNet20_Weights"):
        models.resnet20(weights=models.ResNet18_Weights.DEFAULT)


def test_resnet_options():
    model = models.resnet18(zero_init_residual=True)
    assert all((_numpy(b.bn2.weight) == 0).all() for b in model.modules()
               if isinstance(b, models.BasicBlock))
    model = models.resnet50(replace_stride_with_dilation=[False, True, True], num_classes=5)
    x = pf.tensor(_input("resnet50"))
    trunk = pf.nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1,
                             model.layer2, model.layer3, model.layer4)
    with pf.no_grad():
        assert tuple(trunk.eval()(x).shape) == (2, 2048, 8, 8)  # output stride 8, not 32
        assert tuple(model.eval()(x).shape) == (2, 5)


def test_models_are_an_attribute_of_pipeflow_whatever_is_imported_first():
    for code in ("import pipeflow as pf; pf.models.resnet20()",
                 "import pipeflow.models.resnet as r, pipeflow as pf; "
                 "assert pf.models.resnet50 is r.resnet50"):
        subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.cuda
@pytest.mark.skipif(not pf.cuda.is_available(), reason="needs CuPy and an NVIDIA GPU")
@pytest.mark.parametrize("name", ["resnet18", "resnet20", "vgg11_bn"])
def test_cuda_logits_and_gradients_match_torch(name, tmp_path):
    reference = reference_models.build(name)
    path = tmp_path / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    model = getattr(models, name)(weights=path).cuda()
    x = _input(name)
    _assert_eval_logits_match(model, reference, x, device="cuda")
    _assert_training_step_matches(model, reference, x, rtol=1e-3, device="cuda")
