"""pipeflow.transforms against torchvision's documented behaviour.

torchvision cannot be installed here, so every expected value is derived independently:
PIL images through the PIL calls torchvision's PIL backend makes (img.resize, crop, rotate,
ImageEnhance, HSV), or plain NumPy (slicing, np.pad, np.rot90, colorsys); tensor images and
the batched conversion through torch ops (torchvision's tensor recipes written with torch,
torch.nn.functional.interpolate). Random transforms are checked against a mirror Generator
drawing torchvision's sequence of draws. Real photos come from the shared ImageNet samples;
those tests skip without them."""
import colorsys
import io
import math
import pathlib
import random
import time

import numpy as np
import pytest
from PIL import Image, ImageEnhance

import pipeflow as pf
import pipeflow.transforms as T
import pipeflow.transforms.functional as F
from pipeflow.data import DataLoader, Dataset

SAMPLES = pathlib.Path("/work/shared/data/imagenet-samples")
needs_samples = pytest.mark.skipif(
    not SAMPLES.is_dir(), reason=f"the shared ImageNet sample photos ({SAMPLES}) are absent")
BIL, NEAREST = Image.Resampling.BILINEAR, Image.Resampling.NEAREST


def _torch():
    return pytest.importorskip("torch", reason="torch (the ref extra) is the tensor reference")


def sample_paths():
    return sorted(SAMPLES.glob("*.JPEG"))


def header(path):
    """(mode, size) from the file's header."""
    with Image.open(path) as im:
        return im.mode, im.size


def make_image(w=53, h=37, mode="RGB", seed=0):
    """A smooth gradient with noise: odd sizes, every channel different."""
    rs = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], -1)
    arr = np.clip(base + rs.randint(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    return img if mode == "RGB" else img.convert(mode)


def chw(img):
    a = np.asarray(img)
    return (a[None] if a.ndim == 2 else a.transpose(2, 0, 1)).copy()


def psnr(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


# --- ToTensor, PILToTensor, Normalize ---------------------------------------------------------
def test_to_tensor_pil_and_ndarray():
    torch = _torch()
    img = make_image()
    out = T.ToTensor()(img)
    ref = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous().float().div(255)
    assert isinstance(out, pf.Tensor) and out.dtype == pf.float32 and out.shape == (3, 37, 53)
    np.testing.assert_array_equal(out.numpy(), ref.numpy())
    gray = T.ToTensor()(img.convert("L"))  # 'L' stays one channel
    assert gray.shape == (1, 37, 53)
    np.testing.assert_array_equal(gray.numpy()[0], np.asarray(img.convert("L")) / np.float32(255))
    hwc = np.asarray(img)
    np.testing.assert_array_equal(T.ToTensor()(hwc).numpy(), ref.numpy())
    assert T.ToTensor()(hwc[:, :, 0]).shape == (1, 37, 53)
    floats = np.random.rand(4, 5, 2).astype(np.float32)  # not uint8: transposed, not scaled
    np.testing.assert_array_equal(T.ToTensor()(floats).numpy(), floats.transpose(2, 0, 1))
    with pytest.raises(TypeError):
        T.ToTensor()([1, 2, 3])


def test_pil_to_tensor_keeps_uint8():
    img = make_image()
    out = T.PILToTensor()(img)
    assert out.dtype == pf.uint8 and out.shape == (3, 37, 53)
    np.testing.assert_array_equal(out.numpy(), chw(img))
    assert T.PILToTensor()(img.convert("L")).shape == (1, 37, 53)


def test_normalize_matches_torch_recipe():
    torch = _torch()
    x = np.random.RandomState(1).rand(2, 3, 5, 7).astype(np.float32)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    m, s = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
    ref = torch.from_numpy(x).sub(m).div(s).numpy()
    np.testing.assert_array_equal(T.Normalize(mean, std)(pf.tensor(x[0])).numpy(), ref[0])
    np.testing.assert_array_equal(T.Normalize(mean, std)(pf.tensor(x)).numpy(), ref)  # NCHW
    np.testing.assert_array_equal(T.Normalize(mean, std)(x.copy()), ref)  # NumPy in, NumPy out
    t = pf.tensor(x)
    out = T.Normalize(mean, std, inplace=True)(t)
    assert out is t
    np.testing.assert_array_equal(t.numpy(), ref)
    t = pf.tensor(x)
    T.Normalize(mean, std)(t)
    np.testing.assert_array_equal(t.numpy(), x)  # not in place by default
    with pytest.raises(TypeError, match="float tensor"):
        T.Normalize(mean, std)(pf.tensor(x).byte())
    with pytest.raises(ValueError, match="std evaluated to zero"):
        T.Normalize(mean, (1, 0, 1))(pf.tensor(x))
    with pytest.raises(ValueError, match=r"\(\.\.\., C, H, W\)"):
        T.Normalize(mean, std)(pf.tensor(x[0, 0]))


# --- Resize -----------------------------------------------------------------------------------
def test_resize_size_rules():
    # Resize(int): the shorter side, the longer one int()-truncated (7 * 2 / 3 = 4.67 -> 4)
    assert F.resized_output_size(3, 7, 2) == [2, 4]
    assert F.resized_output_size(375, 500, 100) == [100, 133]
    assert F.resized_output_size(500, 375, [100]) == [133, 100]
    assert F.resized_output_size(375, 500, (64, 48)) == [64, 48]
    # max_size caps the longer side: short = int(120 * 100 / 133) = 90
    assert F.resized_output_size(375, 500, 100, max_size=120) == [90, 120]
    assert F.resized_output_size(375, 500, 100, max_size=200) == [100, 133]
    with pytest.raises(ValueError, match="strictly greater"):
        F.resized_output_size(375, 500, 100, max_size=100)
    with pytest.raises(ValueError, match="max_size should only be passed"):
        T.Resize((10, 20), max_size=30)(make_image())
    with pytest.raises(TypeError):
        T.Resize(10.5)
    with pytest.raises(ValueError):
        T.Resize((1, 2, 3))


@pytest.mark.parametrize("interp", [T.InterpolationMode.BILINEAR, T.InterpolationMode.BICUBIC,
                                    T.InterpolationMode.NEAREST, T.InterpolationMode.LANCZOS])
def test_resize_pil_is_pils_resize(interp):
    img = make_image()
    out = T.Resize(20, interpolation=interp)(img)  # 37x53 -> 20 x int(20 * 53 / 37) = 28
    assert out.size == (28, 20)
    np.testing.assert_array_equal(np.asarray(out),
                                  np.asarray(img.resize((28, 20), F.PIL_MODES[interp])))
    np.testing.assert_array_equal(np.asarray(T.Resize((50, 60), interp)(img)),
                                  np.asarray(img.resize((60, 50), F.PIL_MODES[interp])))
    assert T.Resize(37)(img) is img  # already that size: returned as is, as torchvision


@pytest.mark.parametrize("size", [(20, 25), (80, 100), (37, 20)])
@pytest.mark.parametrize("mode,antialias", [("bilinear", True), ("bilinear", False),
                                            ("bicubic", True), ("bicubic", False),
                                            ("nearest", False), ("nearest-exact", False)])
def test_resize_tensor_matches_interpolate(size, mode, antialias):
    torch = _torch()
    x = np.random.RandomState(2).rand(2, 3, 37, 53).astype(np.float32)
    kw = dict(align_corners=False, antialias=antialias) if "nearest" not in mode else {}
    ref = torch.nn.functional.interpolate(torch.from_numpy(x), size=size, mode=mode, **kw)
    out = T.Resize(size, interpolation=mode, antialias=antialias)(pf.tensor(x))
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=0, atol=2e-5)


def test_resize_uint8_tensor_near_pil():
    img = make_image()
    out = T.Resize(20)(T.PILToTensor()(img))
    assert out.dtype == pf.uint8 and out.shape == (3, 20, 28)
    diff = np.abs(out.numpy().astype(int) - chw(img.resize((28, 20), BIL)).astype(int))
    assert diff.max() <= 1  # PIL's 8-bit fixed point vs float then round


# --- crops ------------------------------------------------------------------------------------
def test_center_crop_rounds_half_to_even_and_pads():
    img = make_image(500, 375)
    a = np.asarray(img)
    # (375 - 224) / 2 = 75.5 -> round() -> 76; (500 - 224) / 2 = 138
    np.testing.assert_array_equal(np.asarray(T.CenterCrop(224)(img)), a[76:300, 138:362])
    img2 = make_image(500, 373)  # 74.5 -> 74
    np.testing.assert_array_equal(np.asarray(T.CenterCrop(224)(img2)),
                                  np.asarray(img2)[74:298, 138:362])
    np.testing.assert_array_equal(T.CenterCrop((224, 100))(T.PILToTensor()(img)).numpy(),
                                  chw(img)[:, 76:300, 200:300])
    small = make_image(5, 4)
    out = np.asarray(T.CenterCrop((7, 8))(small))  # pad left (8-5)//2=1, top (7-4)//2=1
    expected = np.zeros((7, 8, 3), np.uint8)
    expected[1:5, 1:6] = np.asarray(small)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(T.CenterCrop((7, 8))(T.PILToTensor()(small)).numpy(),
                                  expected.transpose(2, 0, 1))


def test_random_crop_draws_and_padding():
    img = make_image()
    mirror = np.random.default_rng(7)
    out = T.RandomCrop((20, 30), generator=7)(img)
    i, j = mirror.integers(0, 37 - 20 + 1), mirror.integers(0, 53 - 30 + 1)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(img)[i:i + 20, j:j + 30])
    # padding=4 (constant fill) then a crop of the padded image
    mirror = np.random.default_rng(8)
    out = T.RandomCrop(32, padding=4, fill=(1, 2, 3), generator=8)(img)
    padded = np.stack([np.pad(np.asarray(img)[..., c], 4, constant_values=c + 1)
                       for c in range(3)], -1)
    i, j = mirror.integers(0, 45 - 32 + 1), mirror.integers(0, 61 - 32 + 1)
    np.testing.assert_array_equal(np.asarray(out), padded[i:i + 32, j:j + 32])
    # pad_if_needed pads both sides of a short dimension by the whole shortfall
    small = make_image(30, 20)
    mirror = np.random.default_rng(9)
    out = T.RandomCrop(40, pad_if_needed=True, padding_mode="edge", generator=9)(small)
    padded = np.pad(np.asarray(small), ((20, 20), (10, 10), (0, 0)), mode="edge")
    i, j = mirror.integers(0, 60 - 40 + 1), mirror.integers(0, 50 - 40 + 1)
    np.testing.assert_array_equal(np.asarray(out), padded[i:i + 40, j:j + 40])
    with pytest.raises(ValueError, match="larger than input image size"):
        T.RandomCrop(40)(small)
    assert T.RandomCrop.get_params(small, (20, 30)) == (0, 0, 20, 30)
    t = T.PILToTensor()(img)
    np.testing.assert_array_equal(T.RandomCrop((20, 30), generator=7)(t).numpy(),
                                  chw(T.RandomCrop((20, 30), generator=7)(img)))


def test_random_resized_crop_get_params_properties():
    img = make_image(200, 120)
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    rng = np.random.default_rng(0)
    for _ in range(300):
        i, j, h, w = T.RandomResizedCrop.get_params(img, scale, ratio, rng)
        assert 0 <= i and 0 <= j and 0 < h and 0 < w and i + h <= 120 and j + w <= 200
        if (h, w) != (120, 160):  # not the fallback: area and ratio in range (up to rounding)
            assert scale[0] - 0.02 <= h * w / (200 * 120) <= scale[1] + 0.02
            assert ratio[0] * 0.9 <= w / h <= ratio[1] * 1.1
    # very elongated images: all 10 tries fail, so the central crop with the ratio clamped
    wide, tall = Image.new("RGB", (1000, 10)), Image.new("RGB", (10, 1000))
    assert T.RandomResizedCrop.get_params(wide, scale, ratio, rng) == (0, 493, 10, 13)
    assert T.RandomResizedCrop.get_params(tall, scale, ratio, rng) == (493, 0, 13, 10)
    assert T.RandomResizedCrop.get_params(Image.new("RGB", (100, 100)), (2.0, 3.0), (1.0, 1.0),
                                          rng) == (0, 0, 100, 100)  # in range: whole image


def test_random_resized_crop_get_params_is_torchvisions_algorithm():
    img = make_image(200, 120)
    scale, ratio = (0.5, 1.0), (0.5, 2.0)
    for seed in range(20):
        mirror = np.random.default_rng(seed)
        expected = None
        for _ in range(10):
            area = 200 * 120 * mirror.uniform(*scale)
            r = math.exp(mirror.uniform(math.log(ratio[0]), math.log(ratio[1])))
            w, h = int(round(math.sqrt(area * r))), int(round(math.sqrt(area / r)))
            if 0 < w <= 200 and 0 < h <= 120:
                expected = (int(mirror.integers(0, 120 - h + 1)),
                            int(mirror.integers(0, 200 - w + 1)), h, w)
                break
        assert expected is not None
        got = T.RandomResizedCrop.get_params(img, scale, ratio, np.random.default_rng(seed))
        assert got == expected


def test_random_resized_crop_output():
    img = make_image(200, 120)
    i, j, h, w = T.RandomResizedCrop.get_params(img, (0.08, 1.0), (3 / 4, 4 / 3),
                                                np.random.default_rng(3))
    out = T.RandomResizedCrop((32, 48), generator=3)(img)
    expected = img.crop((j, i, j + w, i + h)).resize((48, 32), BIL)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))
    t = T.RandomResizedCrop((32, 48), generator=3)(T.ToTensor()(img))
    assert t.shape == (3, 32, 48)
    with pytest.warns(UserWarning, match="min, max"):
        T.RandomResizedCrop(10, scale=(1.0, 0.5))


# --- randomness -------------------------------------------------------------------------------
def _all_random(generator):
    return T.Compose([T.RandomResizedCrop(24, generator=generator),
                      T.RandomHorizontalFlip(generator=generator),
                      T.ColorJitter(0.4, 0.4, 0.4, 0.1, generator=generator),
                      T.RandomRotation(20, generator=generator), T.PILToTensor()])


def test_determinism_per_seed_and_no_global_state():
    img = make_image()
    np.random.seed(0), random.seed(0), pf.manual_seed(0)
    a = _all_random(np.random.default_rng(5))(img).numpy()
    np.random.seed(1), random.seed(1), pf.manual_seed(1)
    b = _all_random(np.random.default_rng(5))(img).numpy()
    np.random.seed(1), random.seed(1), pf.manual_seed(1)
    c = _all_random(np.random.default_rng(6))(img).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    state = np.random.get_state()
    _all_random(None)(img)  # outside a loader: a fresh stream, the global one untouched
    assert np.random.get_state()[1].tolist() == state[1].tolist()
    # an int seed (a stream per transform here) and a pipeflow Generator work as generator=
    np.testing.assert_array_equal(_all_random(5)(img).numpy(), _all_random(5)(img).numpy())
    g = pf.Generator().manual_seed(11)
    x = T.RandomCrop(10, generator=g)(img)
    y = T.RandomCrop(10, generator=pf.Generator().manual_seed(11))(img)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(TypeError, match="generator"):
        T.RandomCrop(10, generator="seed")


def test_flips():
    img = make_image()
    a = np.asarray(img)
    np.testing.assert_array_equal(np.asarray(T.RandomHorizontalFlip(1.0)(img)), a[:, ::-1])
    np.testing.assert_array_equal(np.asarray(T.RandomVerticalFlip(1.0)(img)), a[::-1])
    assert T.RandomHorizontalFlip(0.0)(img) is img
    t = T.PILToTensor()(img)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(1.0)(t).numpy(), chw(img)[:, :, ::-1])
    np.testing.assert_array_equal(T.RandomVerticalFlip(1.0)(t).numpy(), chw(img)[:, ::-1])
    mirror, flip = np.random.default_rng(4), T.RandomHorizontalFlip(0.5, generator=4)
    for _ in range(20):
        expected = a[:, ::-1] if mirror.random() < 0.5 else a
        np.testing.assert_array_equal(np.asarray(flip(img)), expected)


# --- colour -----------------------------------------------------------------------------------
def _hue_pil(img, factor):
    h, s, v = img.convert("HSV").split()
    shifted = (np.asarray(h).astype(np.int64) + int(factor * 255)) % 256  # int(): toward 0
    return Image.merge("HSV", (Image.fromarray(shifted.astype(np.uint8), "L"), s, v)).convert(
        img.mode)


def test_color_jitter_pil_order_and_factors():
    img = make_image()
    for seed in range(6):
        mirror = np.random.default_rng(seed)
        order = mirror.permutation(4)
        b, c, s = (mirror.uniform(0.6, 1.4) for _ in range(3))
        h = mirror.uniform(-0.1, 0.1)
        expected = img
        for k in order:
            expected = [lambda x: ImageEnhance.Brightness(x).enhance(b),
                        lambda x: ImageEnhance.Contrast(x).enhance(c),
                        lambda x: ImageEnhance.Color(x).enhance(s),
                        lambda x: _hue_pil(x, h)][k](expected)
        out = T.ColorJitter(0.4, 0.4, 0.4, 0.1, generator=seed)(img)
        np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))
    # only the set adjustments draw a factor, after the permutation
    mirror = np.random.default_rng(1)
    mirror.permutation(4)
    c = mirror.uniform(0.5, 0.9)
    np.testing.assert_array_equal(np.asarray(T.ColorJitter(contrast=(0.5, 0.9), generator=1)(img)),
                                  np.asarray(ImageEnhance.Contrast(img).enhance(c)))


def test_color_jitter_arguments():
    cj = T.ColorJitter(brightness=0.4, contrast=2, saturation=(0.2, 0.3), hue=0.25)
    assert cj.brightness == (0.6, 1.4) and cj.contrast == (0.0, 3.0)
    assert cj.saturation == (0.2, 0.3) and cj.hue == (-0.25, 0.25)
    assert T.ColorJitter().brightness is None and T.ColorJitter(hue=0).hue is None
    with pytest.raises(ValueError, match="non negative"):
        T.ColorJitter(brightness=-1)
    with pytest.raises(ValueError, match="between"):
        T.ColorJitter(hue=0.6)
    with pytest.raises(TypeError):
        T.ColorJitter(saturation=(1, 2, 3))
    gray = make_image(mode="L")
    assert F.adjust_hue(gray, 0.3) is gray  # as torchvision's PIL path
    with pytest.raises(ValueError):
        F.adjust_hue(make_image(), 0.7)


def test_color_adjust_tensor_recipes():
    torch = _torch()
    img = make_image()
    u8 = chw(img)
    f32 = u8.astype(np.float32) / 255

    def gray(x):  # torchvision's tensor rgb_to_grayscale
        return (0.2989 * x[0] + 0.587 * x[1] + 0.114 * x[2]).to(x.dtype)[None]

    def blend(a, b, r):
        bound = 1.0 if a.is_floating_point() else 255.0
        return (r * a + (1.0 - r) * b).clamp(0, bound).to(a.dtype)

    for x in (u8, f32):
        tx = torch.from_numpy(x)
        px = pf.tensor(x)
        fdt = tx.dtype if tx.is_floating_point() else torch.float32
        cases = [(F.adjust_brightness, 1.3, blend(tx, torch.zeros_like(tx), 1.3)),
                 (F.adjust_saturation, 0.4, blend(tx, gray(tx), 0.4)),
                 (F.adjust_contrast, 1.7,
                  blend(tx, gray(tx).to(fdt).mean(dim=(-3, -2, -1), keepdim=True), 1.7))]
        for fn, factor, ref in cases:
            out = fn(px, factor)
            assert out.dtype == px.dtype
            np.testing.assert_allclose(out.numpy().astype(np.float64), ref.numpy(), atol=1.01
                                       if x.dtype == np.uint8 else 1e-6, rtol=0)
        np.testing.assert_array_equal(F.rgb_to_grayscale(px).numpy(), gray(tx).numpy())
    # hue on float tensors: Python's colorsys as the reference
    x = np.random.RandomState(3).rand(3, 4, 5).astype(np.float32)
    out = F.adjust_hue(pf.tensor(x), -0.3).numpy()
    for i in range(4):
        for j in range(5):
            h, s, v = colorsys.rgb_to_hsv(*x[:, i, j])
            np.testing.assert_allclose(out[:, i, j], colorsys.hsv_to_rgb((h - 0.3) % 1, s, v),
                                       atol=1e-5)
    # on uint8 tensors close to the PIL path (which goes through 8-bit HSV)
    diff = np.abs(F.adjust_hue(pf.tensor(u8), 0.2).numpy().astype(int) -
                  chw(F.adjust_hue(img, 0.2)).astype(int))
    assert diff.mean() < 3
    out = T.ColorJitter(0.4, 0.4, 0.4, 0.1, generator=0)(pf.tensor(u8))
    assert out.dtype == pf.uint8 and out.shape == (3, 37, 53)


def test_grayscale():
    img = make_image()
    np.testing.assert_array_equal(np.asarray(T.Grayscale()(img)), np.asarray(img.convert("L")))
    three = T.Grayscale(3)(img)
    assert three.mode == "RGB"
    a = np.asarray(three)
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 0] == a[..., 2]).all()
    np.testing.assert_array_equal(a[..., 0], np.asarray(img.convert("L")))
    t = T.Grayscale(3)(T.ToTensor()(img))
    assert t.shape == (3, 37, 53)
    with pytest.raises(ValueError):
        T.Grayscale(2)(img)
    assert T.RandomGrayscale(1.0)(img).mode == "RGB"  # keeps the channel count
    assert T.RandomGrayscale(0.0)(img) is img


# --- Pad, RandomRotation, Lambda, Compose -----------------------------------------------------
@pytest.mark.parametrize("padding,widths", [(3, ((3, 3), (3, 3))), ((1, 2), ((2, 2), (1, 1))),
                                            ((1, 2, 3, 4), ((2, 4), (1, 3)))])
@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric"])
def test_pad_matches_np_pad(padding, widths, mode):
    img = make_image(9, 7)
    a = np.asarray(img)
    kw = {"constant_values": 5} if mode == "constant" else {}
    expected = np.pad(a, widths + ((0, 0),), mode=mode, **kw)
    np.testing.assert_array_equal(np.asarray(T.Pad(padding, 5, mode)(img)), expected)
    gray = img.convert("L")
    np.testing.assert_array_equal(np.asarray(T.Pad(padding, 5, mode)(gray)),
                                  np.pad(np.asarray(gray), widths, mode=mode, **kw))
    np.testing.assert_array_equal(T.Pad(padding, 5, mode)(T.PILToTensor()(img)).numpy(),
                                  expected.transpose(2, 0, 1))


def test_pad_fill_per_channel_negative_and_torch_modes():
    torch = _torch()
    img = make_image(9, 7)
    out = np.asarray(T.Pad(2, fill=(10, 20, 30))(img))
    assert out[0, 0].tolist() == [10, 20, 30] and out.shape == (11, 13, 3)
    np.testing.assert_array_equal(np.asarray(T.Pad((-1, 2, -2, 0), padding_mode="edge")(img)),
                                  np.pad(np.asarray(img)[:, 1:-2], ((2, 0), (0, 0), (0, 0)),
                                         mode="edge"))
    x = np.random.RandomState(4).rand(2, 3, 7, 9).astype(np.float32)
    for mode, torch_mode in [("constant", "constant"), ("edge", "replicate"),
                             ("reflect", "reflect")]:
        ref = torch.nn.functional.pad(torch.from_numpy(x), (1, 3, 2, 4), mode=torch_mode)
        np.testing.assert_array_equal(T.Pad((1, 2, 3, 4), padding_mode=mode)(pf.tensor(x))
                                      .numpy(), ref.numpy())
    with pytest.raises(ValueError):
        T.Pad((1, 2, 3))
    with pytest.raises(ValueError):
        T.Pad(1, padding_mode="wrap")


def test_random_rotation():
    img = make_image(40, 40)
    a = np.asarray(img)
    np.testing.assert_array_equal(np.asarray(T.RandomRotation((90, 90))(img)), np.rot90(a))
    wide = make_image(30, 20)
    out = T.RandomRotation((90, 90), expand=True)(wide)
    np.testing.assert_array_equal(np.asarray(out), np.rot90(np.asarray(wide)))
    out = np.asarray(T.RandomRotation((45, 45), fill=(255, 0, 0))(img))
    assert out[0, 0].tolist() == [255, 0, 0]  # corners come from outside: filled
    for seed, (interp, expand, center) in enumerate([(T.InterpolationMode.NEAREST, False, None),
                                                     (T.InterpolationMode.BILINEAR, True, None),
                                                     (T.InterpolationMode.NEAREST, False, (3, 5))]):
        angle = np.random.default_rng(seed).uniform(-30, 30)
        expected = img.rotate(angle, F.PIL_MODES[interp], expand, center, fillcolor=(7, 7, 7))
        t = T.RandomRotation(30, interp, expand, center, fill=7, generator=seed)
        np.testing.assert_array_equal(np.asarray(t(img)), np.asarray(expected))
    with pytest.raises(ValueError):
        T.RandomRotation(-5)
    with pytest.raises(TypeError):
        T.RandomRotation(5)(T.ToTensor()(img))


def test_lambda_and_compose():
    seen = []
    pipeline = T.Compose([T.Lambda(lambda x: seen.append("a") or x + 1),
                          T.Lambda(lambda x: seen.append("b") or x * 10)])
    assert pipeline(1) == 20 and seen == ["a", "b"]
    with pytest.raises(TypeError, match="callable"):
        T.Lambda(3)
    assert "Resize(size=5" in repr(T.Compose([T.Resize(5)]))
    img = make_image()
    applied = T.RandomApply([T.Lambda(lambda x: "done")], p=1.0)(img)
    assert applied == "done" and T.RandomApply([T.Lambda(lambda x: "done")], p=0.0)(img) is img


# --- batched device transform -------------------------------------------------------------------
def test_to_float_nchw_matches_torchvision_recipe():
    torch = _torch()
    x = np.random.RandomState(5).randint(0, 256, (4, 6, 7, 3)).astype(np.uint8)
    mean, std = T.IMAGENET_MEAN, T.IMAGENET_STD
    ref = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255)
    ref_norm = ref.sub(torch.tensor(mean)[:, None, None]).div(torch.tensor(std)[:, None, None])
    out = T.to_float_nchw(pf.tensor(x), mean, std)
    assert out.shape == (4, 3, 6, 7) and out.dtype == pf.float32 and out.is_contiguous()
    np.testing.assert_allclose(out.numpy(), ref_norm.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(T.BatchNormalize(mean, std)(x).numpy(), ref_norm.numpy(),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(T.to_float_nchw(x).numpy(), ref.numpy())  # no mean/std: / 255
    single = T.to_float_nchw(pf.tensor(x[0]), mean, std)
    np.testing.assert_allclose(single.numpy(), ref_norm.numpy()[0], rtol=1e-6, atol=1e-6)
    with pytest.raises(TypeError, match="uint8"):
        T.to_float_nchw(pf.tensor(x).float())
    with pytest.raises(ValueError, match="one value per channel"):
        T.to_float_nchw(pf.tensor(x), (0.5, 0.5), (1, 1))


@pytest.mark.skipif(not pf.cuda.is_available(), reason="needs CuPy and an NVIDIA GPU")
def test_to_float_nchw_on_gpu():
    x = np.random.RandomState(6).randint(0, 256, (8, 16, 16, 3)).astype(np.uint8)
    batch = pf.tensor(x).cuda()
    out = T.BatchNormalize()(batch)
    assert out.device.type == "cuda" and out.shape == (8, 3, 16, 16)
    np.testing.assert_allclose(out.cpu().numpy(), T.BatchNormalize()(x).numpy(), rtol=1e-6,
                               atol=1e-6)
    t = T.Resize(8)(T.ToTensor()(make_image()).cuda())
    assert t.device.type == "cuda"
    np.testing.assert_allclose(t.cpu().numpy(), T.Resize(8)(T.ToTensor()(make_image())).numpy(),
                               atol=1e-5)


# --- decoding ---------------------------------------------------------------------------------
def _jpeg_bytes(img, **kw):
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def test_decode_converts_modes(tmp_path):
    img = make_image()
    cmyk = T.decode(_jpeg_bytes(img.convert("CMYK"), quality=95))
    assert cmyk.mode == "RGB" and cmyk.size == img.size
    assert psnr(cmyk, img) > 25
    rgba = img.convert("RGBA")
    rgba.save(tmp_path / "a.png")
    np.testing.assert_array_equal(np.asarray(T.decode(tmp_path / "a.png")), np.asarray(img))
    pal = img.convert("P")
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    assert T.decode(str(tmp_path / "p.png")).mode == "RGB"
    gray = img.convert("L")
    data = _jpeg_bytes(gray)
    out = T.decode(io.BytesIO(data))
    assert out.mode == "RGB"
    a = np.asarray(out)
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
    assert T.decode(data, mode=None).mode == "L"
    enc = T.decode(data, lazy=True)
    assert isinstance(enc, T.EncodedImage) and enc.size == img.size
    assert F.get_dimensions(enc) == [3, 37, 53]


def test_to_rgb_helper():
    img = make_image()
    for mode in ("L", "CMYK", "P", "RGBA", "LA"):
        out = F.to_rgb(img.convert(mode))
        assert out.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(out), np.asarray(img.convert(mode).convert("RGB")))
    assert F.to_rgb(img) is img
    gray = T.ToTensor()(img.convert("L"))
    rgb = F.to_rgb(gray)
    assert rgb.shape == (3, 37, 53) and (rgb.numpy() == gray.numpy()).all()


@needs_samples
def test_decode_grayscale_samples_to_rgb():
    grays = [p for p in sample_paths() if header(p)[0] == "L"]
    assert grays, "the shared samples hold grayscale photos"
    for p in grays:
        img = T.decode(p)
        assert img.mode == "RGB"
        with Image.open(p) as original:
            np.testing.assert_array_equal(np.asarray(img)[..., 0], np.asarray(original))
        assert T.ToTensor()(img).shape[0] == 3


def _largest_sample():
    return max(sample_paths(), key=lambda p: np.prod(header(p)[1]))


@needs_samples
def test_draft_decode_close_to_full(capsys):
    path = _largest_sample()
    full_img = T.decode(path)
    w, h = full_img.size
    assert min(w, h) >= 600, "the largest shared sample is large enough to draft"
    # eager: never below target_size, and only when shrinking 2x or more
    drafted = T.decode(path, target_size=128)
    assert drafted.size[0] < w and min(drafted.size) >= 128
    assert T.decode(path, target_size=(w // 2 + 1, 10)).size == (w, h)
    for n in (64, 160):
        a, b = T.Resize(n)(full_img), T.Resize(n)(T.decode(path, lazy=True))
        assert a.size == b.size and psnr(a, b) > 30
        assert psnr(a, T.Resize(n)(T.decode(path, target_size=n))) > 30
    # RandomResizedCrop on an EncodedImage: the same draws, nearly the same pixels
    for seed in range(4):
        a = T.RandomResizedCrop(64, generator=seed)(full_img)
        b = T.RandomResizedCrop(64, generator=seed)(T.decode(path, lazy=True))
        assert psnr(a, b) > 30, seed
    # a small image is never reduced: the output is exactly the full decode's
    small = min(sample_paths(), key=lambda p: np.prod(header(p)[1]))
    a = T.RandomResizedCrop(200, generator=1)(T.decode(small))
    b = T.RandomResizedCrop(200, generator=1)(T.decode(small, lazy=True))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@needs_samples
def test_draft_decode_is_faster_for_large_shrinks(record_property):
    big = T.decode(_largest_sample()).resize((3000, 4000), BIL)
    data = _jpeg_bytes(big, quality=90)

    def timed(fn, n=3):
        fn()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n

    full = timed(lambda: T.Resize(256)(T.decode(data)))
    fast = timed(lambda: T.Resize(256)(T.decode(data, lazy=True)))
    rrc_full = timed(lambda: T.RandomResizedCrop(224, generator=0)(T.decode(data)))
    rrc_fast = timed(lambda: T.RandomResizedCrop(224, generator=0)(T.decode(data, lazy=True)))
    report = (f"3000x4000 JPEG: Resize(256) full {full * 1e3:.1f} ms, draft {fast * 1e3:.1f} ms; "
              f"RandomResizedCrop(224) full {rrc_full * 1e3:.1f} ms, draft {rrc_fast * 1e3:.1f} ms")
    record_property("draft_timing", report)
    print(report)
    assert psnr(T.Resize(256)(T.decode(data)), T.Resize(256)(T.decode(data, lazy=True))) > 30


# --- in a DataLoader --------------------------------------------------------------------------
class _Photos(Dataset):
    def __init__(self, paths):
        self.paths = paths
        self.transform = T.Compose([T.RandomResizedCrop(48, scale=(0.2, 1.0)),
                                    T.RandomHorizontalFlip(), T.ColorJitter(0.3, 0.3, 0.3, 0.05),
                                    T.RandomRotation(10), T.PILToTensor()])

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.transform(T.decode(self.paths[i], lazy=True)), i


@needs_samples
def test_loader_batches_identical_across_worker_counts():
    dataset = _Photos(sample_paths()[:8])

    def epochs(num_workers):
        kw = dict(timeout=60) if num_workers else {}
        loader = DataLoader(dataset, batch_size=3, shuffle=True, seed=1234,
                            num_workers=num_workers, **kw)
        out = []
        for _ in range(2):
            out.append([(x.numpy().copy(), y.numpy().copy()) for x, y in loader])
        return out

    np.random.seed(0)
    serial = epochs(0)
    np.random.seed(99)
    parallel = epochs(2)
    for e in range(2):
        assert len(serial[e]) == 3
        for (xa, ya), (xb, yb) in zip(serial[e], parallel[e]):
            np.testing.assert_array_equal(ya, yb)
            np.testing.assert_array_equal(xa, xb)
    # a new epoch draws new augmentations for the same sample
    first = {int(i): x[k] for x, y in serial[0] for k, i in enumerate(y)}
    second = {int(i): x[k] for x, y in serial[1] for k, i in enumerate(y)}
    assert any(not np.array_equal(first[i], second[i]) for i in first)
    assert serial[0][0][0].shape == (3, 3, 48, 48) and serial[0][0][0].dtype == np.uint8


def test_libjpeg_turbo_decode_equals_pil():
    """decode_rgb / decode_rgb_array (simplejpeg) give PIL's pixels for RGB and grayscale
    JPEGs, and fall back to PIL for other formats."""
    import io

    from PIL import Image

    from pipeflow.transforms import decode_rgb, decode_rgb_array
    rng = np.random.default_rng(0)
    for mode in ("RGB", "L"):
        img = Image.fromarray(rng.integers(0, 255, (37, 53, 3) if mode == "RGB" else (37, 53),
                                           dtype=np.uint8), mode)
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=90)
        data = buffer.getvalue()
        expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        np.testing.assert_array_equal(decode_rgb_array(data), expected)
        np.testing.assert_array_equal(np.asarray(decode_rgb(data)), expected)
    png = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)).save(png, "PNG")
    assert decode_rgb_array(png.getvalue()).shape == (5, 7, 3)
