"""safetensors files (pipeflow.io.safetensors): files the safetensors library writes in every
dtype pipeflow has, mmap, map_location, file objects, a timm-style ResNet state dict,
save_safetensors read back by the library, and broken or lying headers."""
import io
import json
import mmap
import struct

import ml_dtypes
import numpy as np
import pytest

import pipeflow as pf
import pipeflow.io as pio
from pipeflow.io import CheckpointError

st_numpy = pytest.importorskip("safetensors.numpy")

NP_DTYPES = [np.float16, ml_dtypes.bfloat16, np.float32, np.float64, np.int8, np.int16,
             np.int32, np.int64, np.uint8, np.bool_]
SHAPES = [(3, 4), (), (0, 2), (2, 1, 3)]


def sample(np_dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    np_dtype = np.dtype(np_dtype)
    if np_dtype == np.bool_:
        values = rng.random(shape) > 0.5
    elif np_dtype.kind in "iu":
        info = np.iinfo(np_dtype)
        values = rng.integers(info.min, info.max, shape, dtype=np_dtype, endpoint=True)
    else:
        values = (rng.standard_normal(shape) * 100).astype(np_dtype)
    return np.asarray(values)  # an array even for shape ()


def arrays():
    return {f"{np.dtype(d).name}.{i}": sample(d, shape)
            for d in NP_DTYPES for i, shape in enumerate(SHAPES)}


def bits(a):
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def check(loaded, expected):
    """`loaded` holds exactly the arrays `expected`, as plain tensors, down to the bits."""
    assert type(loaded) is dict and sorted(loaded) == sorted(expected)
    for name, a in expected.items():
        t = loaded[name]
        assert type(t) is pf.Tensor and not t.requires_grad, name
        assert t._data.dtype == a.dtype and t.shape == a.shape, name
        np.testing.assert_array_equal(bits(t._data), bits(a), err_msg=name)


def mapped(t):
    base = t._data
    while getattr(base, "base", None) is not None:
        base = base.base
    return isinstance(getattr(base, "obj", base), mmap.mmap)  # (a memoryview of the map)


# --- files the library writes -------------------------------------------------------------------
@pytest.mark.parametrize("use_mmap", [False, True])
def test_every_dtype_from_the_library(tmp_path, use_mmap):
    expected = arrays()
    path = tmp_path / "all.safetensors"
    st_numpy.save_file(expected, str(path), metadata={"format": "np"})
    loaded = pio.load(path, mmap=use_mmap)
    check(loaded, expected)
    assert loaded["bfloat16.0"].dtype == pf.bfloat16 and loaded["bool.0"].dtype == pf.bool
    for name, t in loaded.items():
        assert mapped(t) == (use_mmap and t._data.size > 0), name
    loaded["float32.0"]._data[0, 0] = 12345.0  # writable, and (mmap: copy-on-write) private
    check(pio.load(path), expected)


def test_files_written_through_safetensors_torch(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    tensors = {str(d): (torch.randn(3, 5) * 50).to(d) for d in
               (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8,
                torch.int16, torch.int32, torch.int64, torch.uint8)}
    tensors["bool"] = torch.randn(4) > 0
    tensors["scalar"] = torch.tensor(7, dtype=torch.int64)
    st_torch.save_file(tensors, str(tmp_path / "t.safetensors"))
    loaded = pio.load(tmp_path / "t.safetensors")
    assert sorted(loaded) == sorted(tensors)
    for name, ref in tensors.items():
        assert loaded[name].shape == ref.shape and str(loaded[name].dtype)[9:] == \
            str(ref.dtype)[6:], name
        np.testing.assert_array_equal(bits(loaded[name]._data),
                                      ref.reshape(-1).view(torch.uint8).numpy(), err_msg=name)


def torch_resnet18(torch):
    """ResNet-18 with torchvision's (and timm's) state-dict names, built without either."""
    nn = torch.nn

    def block(cin, cout, stride):
        b = nn.Module()
        b.conv1, b.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        b.conv2, b.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            b.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                         nn.BatchNorm2d(cout))
        return b
    m = nn.Module()
    m.conv1, m.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
    for i, (cin, cout) in enumerate([(64, 64), (64, 128), (128, 256), (256, 512)], 1):
        setattr(m, f"layer{i}", nn.Sequential(block(cin, cout, 1 if i == 1 else 2),
                                              block(cout, cout, 1)))
    m.fc = nn.Linear(512, 1000)
    return m


@pytest.mark.parametrize("use_mmap", [False, True])
def test_a_timm_resnet_state_dict_loads_into_a_pipeflow_resnet(tmp_path, use_mmap):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    reference = torch_resnet18(torch)
    for bn in (m for m in reference.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.normal_()
        bn.num_batches_tracked.fill_(123)
    path = tmp_path / "resnet18.a1_in1k.safetensors"
    st_torch.save_file(reference.state_dict(), str(path))
    state = pio.load(path, mmap=use_mmap)
    model = pf.models.resnet18()
    assert sorted(state) == sorted(model.state_dict())
    model.load_state_dict(state)
    mine = model.state_dict()
    for key, ref in reference.state_dict().items():
        np.testing.assert_array_equal(mine[key].numpy(), ref.numpy(), err_msg=key)
    assert int(mine["layer4.1.bn2.num_batches_tracked"]) == 123


def test_file_objects_and_map_location(tmp_path):
    expected = {"w": sample(np.float32, (2, 3)), "i": sample(np.int16, (4,))}
    raw = st_numpy.save(expected)
    buf = io.BytesIO(b"junk" + raw)
    buf.seek(4)  # the file starts after other data
    check(pio.load(buf), expected)
    with pytest.raises(CheckpointError, match="file on disk"):
        pio.load(io.BytesIO(raw), mmap=True)
    path = tmp_path / "m.safetensors"
    path.write_bytes(raw)
    seen = []
    for where in ("cpu", pf.device("cpu"), {"cuda:0": "cpu"},
                  lambda storage, location: seen.append((location, storage.shape)) or storage):
        check(pio.load(path, map_location=where), expected)
    assert sorted(seen) == [("cpu", (4,)), ("cpu", (6,))]  # each tensor, as a 1-D storage
    if not pf.cuda.is_available():
        with pytest.raises(CheckpointError, match="CUDA") as info:
            pio.load(path, map_location="cuda")
        assert "m.safetensors" in str(info.value)


# --- writing -------------------------------------------------------------------------------------
def test_save_safetensors_is_read_back_by_the_library(tmp_path):
    base = pf.arange(12, dtype=pf.float32).reshape(3, 4)
    tensors = {f"{np.dtype(d).name}.{i}": pf.tensor(sample(d, shape, seed=i))
               for d in NP_DTYPES for i, shape in enumerate(SHAPES)}
    tensors.update(transposed=base.T, param=pf.nn.Parameter(pf.ones(2)))
    path = tmp_path / "mine.safetensors"
    pio.save_safetensors(tensors, path, metadata={"format": "pt", "arch": "test"})
    expected = {name: np.array(t._data, order="C") for name, t in tensors.items()}
    theirs = st_numpy.load_file(str(path))
    assert sorted(theirs) == sorted(expected)
    for name, a in expected.items():
        assert theirs[name].dtype == a.dtype and theirs[name].shape == a.shape, name
        np.testing.assert_array_equal(bits(theirs[name]), bits(a), err_msg=name)
    from safetensors import safe_open
    with safe_open(str(path), framework="np") as f:
        assert f.metadata() == {"format": "pt", "arch": "test"}
    check(pio.load(path), expected)
    # every tensor's data starts aligned to its element size, so that mapped views are aligned
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    assert (8 + length) % 8 == 0
    header = json.loads(raw[8:8 + length])
    for name, info in header.items():
        if name != "__metadata__":
            assert info["data_offsets"][0] % expected[name].itemsize == 0, name
    # to a file object
    buf = io.BytesIO()
    pio.save_safetensors({"w": base}, buf)
    check(pio.load(io.BytesIO(buf.getvalue())),
          {"w": np.arange(12, dtype=np.float32).reshape(3, 4)})


@pytest.mark.parametrize("tensors, metadata, match", [
    ({"w": np.zeros(2)}, None, "only tensors"),
    ({1: pf.ones(2)}, None, "names must be strings"),
    ({"__metadata__": pf.ones(2)}, None, "names must be strings"),
    ({"w": pf.ones(2)}, {"k": 1}, "metadata"),
])
def test_save_safetensors_refuses_what_it_cannot_write_before_any_io(tmp_path, tensors, metadata,
                                                                     match):
    path = tmp_path / "old.safetensors"
    path.write_bytes(b"old")
    with pytest.raises(TypeError, match=match):
        pio.save_safetensors(tensors, path, metadata=metadata)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == [path.name]


# --- broken and lying files ---------------------------------------------------------------------
F32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
I8 = {"dtype": "I8", "shape": [3], "data_offsets": [8, 11]}


def handmade(path, header, data=bytes(11), length=None):
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)
    return path


@pytest.mark.parametrize("header, data, length, match, library_refuses", [
    ({"a": F32, "b": I8}, bytes(11), 10 ** 6, r"header \(1000000 bytes\) needs bytes", True),
    ({"a": F32, "b": I8}, bytes(11), 2 ** 40, "beyond the limit", True),
    (b'{"a": {"dtype": ', bytes(11), None, "not valid JSON", True),
    (b'{"\xff": 1}', bytes(11), None, "not valid JSON", True),
    ({"a": 5}, bytes(11), None, "header entry is not an object", True),
    ({"a": dict(F32, dtype="F33")}, bytes(8), None, "unknown dtype 'F33'", True),
    ({"a": dict(F32, dtype="U16", shape=[4])}, bytes(8), None, "no dtype for safetensors' U16",
     False),
    ({"a": dict(F32, shape=[3]), "b": I8}, bytes(11), None,
     r"make 12 bytes, but data_offsets \[0, 8\] span 8", True),
    ({"a": dict(F32, shape=[-2])}, bytes(8), None, "not a list of sizes", True),
    ({"a": dict(F32, shape=[2.0])}, bytes(8), None, "not a list of sizes", True),
    ({"a": dict(F32, data_offsets=[8])}, bytes(8), None, r"are not \[begin, end\]", True),
    ({"a": dict(F32, data_offsets=[8, 0])}, bytes(8), None, r"are not \[begin, end\]", True),
    ({"a": F32, "b": dict(I8, data_offsets=[5, 8])}, bytes(8), None,
     "overlaps the tensor before it", True),
    ({"a": F32, "b": I8}, bytes(10), None, r"'b' at data bytes 8..11 runs past the end", True),
    ({"a": F32, "b": dict(I8, data_offsets=[9, 12])}, bytes(12), None,
     "leaves bytes 8..9 of the data unused", True),
    ({"a": F32, "b": I8}, bytes(13), None, "2 bytes after the last tensor", True),
    (b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "a": {"dtype": "F32", '
     b'"shape": [2], "data_offsets": [0, 8]}}', bytes(8), None, "names 'a' twice", False),
    ({"__metadata__": {"k": 1}, "a": F32}, bytes(8), None, "__metadata__", True),
])
def test_broken_and_lying_headers_are_refused(tmp_path, header, data, length, match,
                                              library_refuses):
    path = handmade(tmp_path / "bad.safetensors", header, data, length)
    with pytest.raises(CheckpointError, match=match) as info:
        pio.load(path)
    assert "bad.safetensors" in str(info.value)
    if library_refuses:  # the library agrees the file is broken
        with pytest.raises(Exception):
            st_numpy.load_file(str(path))


def test_the_handmade_helper_makes_valid_files(tmp_path):
    data = np.float32([1.5, -2]).tobytes() + np.int8([1, 2, 3]).tobytes()
    path = handmade(tmp_path / "ok.safetensors", {"a": F32, "b": I8}, data)
    expected = {"a": np.float32([1.5, -2]), "b": np.int8([1, 2, 3])}
    check(pio.load(path), expected)
    check({k: pf.tensor(v) for k, v in st_numpy.load_file(str(path)).items()}, expected)


def test_truncated_files_are_refused(tmp_path):
    good = tmp_path / "good.safetensors"
    st_numpy.save_file({"w": sample(np.float32, (50,)), "b": sample(np.int64, (3,))}, str(good))
    raw = good.read_bytes()
    for n, cut in enumerate([3, 8, 9, 40, len(raw) - 30, len(raw) - 1]):
        bad = tmp_path / f"cut{n}.safetensors"
        bad.write_bytes(raw[:cut])
        with pytest.raises(CheckpointError) as info:
            pio.load(bad)
        assert bad.name in str(info.value)
