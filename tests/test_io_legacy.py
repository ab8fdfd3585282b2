"""torch's legacy checkpoint formats (pipeflow.io.torch_legacy, torch_tar): files torch 2.13
writes with _use_new_zipfile_serialization=False, hand-built files in the layouts of older
torch (the 0.4-era pickle stream with _rebuild_tensor and storage views, the tar format), and
malicious, truncated and lying files. torch.load is the oracle that a hand-built file is valid.
"""
import collections
import io
import mmap
import os
import pickle
import struct
import subprocess
import sys
import tarfile

import numpy as np
import pytest

import pipeflow as pf
import pipeflow.io as pio
from pipeflow.io import CheckpointError, ForbiddenGlobalError

torch = pytest.importorskip("torch")
from test_io import (PLAIN, TORCH_DTYPES, Evil, FakeStorage, FakeTensor,  # noqa: E402
                     check_plain, same, torch_sample)

MAGIC, PROTOCOL = 0x1950A86A20F9469CFC6C, 1001
SYS_INFO = {"protocol_version": PROTOCOL, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 8}}


def exact(t, ref):
    """Same dtype, shape and values as the torch tensor `ref`, down to the bits."""
    same(t, ref)
    a = t._data if isinstance(t._data, np.ndarray) else t._data.get()
    mine = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    theirs = ref.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
    np.testing.assert_array_equal(mine, theirs)


def save_legacy(obj, path, **kwargs):
    torch.save(obj, path, _use_new_zipfile_serialization=False, **kwargs)
    return path


def mapped(t):
    """Whether the tensor's memory is a view of a memory map (not an array of its own)."""
    base = t._data
    while getattr(base, "base", None) is not None:
        base = base.base
    return isinstance(getattr(base, "obj", base), mmap.mmap)  # (a memoryview of the map)


# --- what torch 2.13 writes ----------------------------------------------------------------------
@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("use_mmap", [False, True])
def test_pf_loads_what_torch_writes_in_the_legacy_format(tmp_path, protocol, use_mmap):
    base = torch.arange(20, dtype=torch.float32).reshape(4, 5)
    obj = {f"t_{str(d).split('.')[1]}": torch_sample(d) for d in TORCH_DTYPES}
    obj.update(transposed=base.T, slice=base[1:3, 2:], row=base[2], base=base,
               expanded=torch.arange(3.).expand(4, 3), scalar=torch.tensor(3.5),
               empty=torch.zeros(0, 3), param=torch.nn.Parameter(torch.randn(2, 3)),
               frozen=torch.nn.Parameter(torch.randn(2), requires_grad=False),
               nested={"a": [torch.ones(2), {"b": (torch.zeros(1, dtype=torch.int64), 5)}]},
               size=torch.Size([2, 3]), dtype=torch.float16, counter=collections.Counter("aba"),
               **PLAIN)
    path = save_legacy(obj, tmp_path / "legacy.pt", pickle_protocol=protocol)
    r = pio.load(path, mmap=use_mmap)

    for key in [k for k in obj if k.startswith("t_")] + ["transposed", "slice", "row", "base",
                                                          "expanded", "scalar", "empty"]:
        exact(r[key], obj[key])
        assert r[key].stride() == obj[key].stride(), key
        assert mapped(r[key]) == (use_mmap and obj[key].numel() > 0), key
    assert r["t_bfloat16"].dtype == pf.bfloat16 and r["t_bool"].dtype == pf.bool
    assert isinstance(r["param"], pf.nn.Parameter) and r["param"].requires_grad
    assert not r["frozen"].requires_grad
    exact(r["param"].detach(), obj["param"])
    exact(r["nested"]["a"][1]["b"][0], obj["nested"]["a"][1]["b"][0])
    assert r["nested"]["a"][1]["b"][1] == 5 and r["size"] == (2, 3)
    assert r["dtype"] is pf.float16 and r["counter"] == collections.Counter("aba")
    check_plain(r)
    # views of one storage stay views of one storage
    r["base"]._data[2, 3] = 100.0
    assert r["slice"]._data[1, 1] == 100.0 and r["row"]._data[3] == 100.0
    assert r["transposed"]._data[3, 2] == 100.0
    if use_mmap:  # copy-on-write: the file doesn't change
        assert pio.load(path)["base"]._data[2, 3] == 13.0


def test_state_dict_and_optimizer_state_in_the_legacy_format(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(8, 3)).sum().backward()
    opt.step()
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}
    r = pio.load(save_legacy(ckpt, tmp_path / "ckpt.pt"))

    sd = ckpt["model"]
    assert type(r["model"]) is collections.OrderedDict and list(r["model"]) == list(sd)
    assert r["model"]._metadata == sd._metadata
    for k in sd:
        exact(r["model"][k], sd[k])
    ref = ckpt["optimizer"]
    assert r["optimizer"]["param_groups"] == ref["param_groups"] and r["epoch"] == 3
    for i, state in ref["state"].items():
        for name in ("step", "exp_avg", "exp_avg_sq"):
            exact(r["optimizer"]["state"][i][name], state[name])


def test_map_location_and_file_objects(tmp_path):
    path = save_legacy({"w": torch.arange(6.).reshape(2, 3)}, tmp_path / "m.pt")
    seen = []
    for where in ("cpu", pf.device("cpu"), {"cuda:0": "cpu"},
                  lambda storage, location: seen.append(location) or storage):
        t = pio.load(path, map_location=where)["w"]
        assert t.device == "cpu"
        exact(t, torch.arange(6.).reshape(2, 3))
    assert seen == ["cpu"]
    buf = io.BytesIO(b"junk" + path.read_bytes())
    buf.seek(4)  # the checkpoint starts after other data
    exact(pio.load(buf)["w"], torch.arange(6.).reshape(2, 3))
    with pytest.raises(CheckpointError, match="file on disk"):
        pio.load(io.BytesIO(path.read_bytes()), mmap=True)
    if not pf.cuda.is_available():
        with pytest.raises(CheckpointError, match="CUDA"):
            pio.load(path, map_location="cuda")


# --- hand-built files in the layouts of older torch ----------------------------------------------
class LegacyStorage(FakeStorage):
    """A persistent id as the legacy format writes it: with view metadata (key, offset, numel)."""

    def __init__(self, storage_type, key, numel, location="cpu", view=None):
        super().__init__(storage_type, key, numel, location)
        self.pid += (view,)


class OldTensor(FakeTensor):
    """A tensor as torch 0.4 pickled it: _rebuild_tensor, with no requires_grad argument."""

    def __reduce__(self):
        return torch._utils._rebuild_tensor, self.args[:4]


class Py2Pickler(pickle._Pickler):
    """Writes str as Python 2 wrote its str (SHORT_BINSTRING), as in pre-2020 checkpoints."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_str(self, text):
        raw = text.encode("utf-8")
        self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        self.memoize(text)
    dispatch[str] = save_str


def dumps(obj, py2=False):
    """`obj` pickled (protocol 2) the way torch.save does, FakeStorages as persistent ids."""
    buf = io.BytesIO()
    pickler = (Py2Pickler if py2 else pickle.Pickler)(buf, protocol=2)
    pickler.persistent_id = lambda o: o.pid if isinstance(o, FakeStorage) else None
    pickler.dump(obj)
    return buf.getvalue()


def storage_record(array, count=None):
    """A storage as both legacy formats write it: int64 element count, little-endian data."""
    return struct.pack("<q", array.size if count is None else count) + \
        array.astype(array.dtype.newbyteorder("<")).tobytes()


def legacy_stream(path, obj, data, *, magic=MAGIC, version=PROTOCOL, sys_info=SYS_INFO,
                  keys=None, counts=None, pickle_bytes=None, py2=False):
    """A pickle-stream checkpoint: `obj` names storages through LegacyStorage ids, `data` maps
    their keys to NumPy arrays; `keys`, `counts` and `pickle_bytes` can lie."""
    keys = list(data) if keys is None else keys
    with open(path, "wb") as f:
        for part in (magic, version, sys_info):
            f.write(dumps(part, py2))
        f.write(dumps(obj, py2) if pickle_bytes is None else pickle_bytes)
        f.write(dumps(keys, py2))
        for key in keys if isinstance(keys, list) else []:
            array = data.get(key, np.zeros(0, np.float32))
            f.write(storage_record(array, (counts or {}).get(key)))
    return path


def cifar_checkpoint(path, location="cpu", py2=False):
    """The shape of the widely used CIFAR ResNet checkpoints (DataParallel keys, torch 0.4)."""
    weight = LegacyStorage(torch.FloatStorage, "140", 2 * 3 * 3 * 3, location)
    stats = LegacyStorage(torch.FloatStorage, "141", 4, location)
    tracked = LegacyStorage(torch.LongStorage, "142", 1, location)
    state = collections.OrderedDict([
        ("module.conv1.weight", OldTensor(weight, 0, (2, 3, 3, 3), (27, 9, 3, 1))),
        ("module.bn1.running_mean", OldTensor(stats, 0, (2,), (1,))),
        ("module.bn1.running_var", OldTensor(stats, 2, (2,), (1,))),
        ("module.bn1.num_batches_tracked", OldTensor(tracked, 0, (), ()))])
    data = {"140": np.linspace(-1, 1, 54, dtype=np.float32), "141": np.float32([0, 1, 2, 3]),
            "142": np.int64([7])}
    return legacy_stream(path, {"state_dict": state, "best_prec1": 91.7, "epoch": 200}, data,
                         py2=py2)


@pytest.mark.parametrize("py2", [False, True])
def test_old_torch_checkpoints_with_rebuild_tensor(tmp_path, py2):
    path = cifar_checkpoint(tmp_path / "resnet20.th", py2=py2)
    assert (b"U\x13module.conv1.weight" in path.read_bytes()) == py2  # SHORT_BINSTRING
    r, ref = pio.load(path), torch.load(path, weights_only=True)
    assert r["best_prec1"] == 91.7 and r["epoch"] == 200
    assert type(r["state_dict"]) is collections.OrderedDict
    assert list(r["state_dict"]) == list(ref["state_dict"])
    for k, v in ref["state_dict"].items():
        exact(r["state_dict"][k], v)
    # two tensors at different offsets of one storage share it
    r["state_dict"]["module.bn1.running_mean"]._data[:] = -5
    assert r["state_dict"]["module.bn1.running_var"]._data[0] == 2


def test_storage_views_of_old_checkpoints(tmp_path):
    # torch 0.4 could save slices of a storage: persistent ids with (view key, offset, numel)
    root = (torch.FloatStorage, "7", 10)
    views = {"a": OldTensor(LegacyStorage(*root, view=("70", 2, 5)), 1, (2, 2), (1, 2)),
             "b": OldTensor(LegacyStorage(*root, view=("71", 6, 4)), 0, (4,), (1,)),
             "whole": OldTensor(LegacyStorage(*root), 0, (10,), (1,))}
    path = legacy_stream(tmp_path / "views.pt", views, {"7": np.arange(10, dtype=np.float32)})
    r, ref = pio.load(path), torch.load(path, weights_only=True)
    for key in views:
        exact(r[key], ref[key])
    assert r["a"].stride() == (1, 2)
    r["whole"]._data[6] = 60.0
    assert r["b"]._data[0] == 60.0


def test_byte_order_is_little_endian_whatever_sys_info_says(tmp_path):
    # torch writes legacy storages little-endian on every machine; sys_info only describes the
    # writer, and torch.load ignores it: so does pipeflow
    big_endian_writer = dict(SYS_INFO, little_endian=False)
    storage = LegacyStorage(torch.IntStorage, "0", 3)
    path = legacy_stream(tmp_path / "be.pt", {"t": FakeTensor(storage, 0, (3,), (1,))},
                         {"0": np.int32([1, 2, 300])}, sys_info=big_endian_writer)
    exact(pio.load(path)["t"], torch.load(path, weights_only=True)["t"])
    np.testing.assert_array_equal(pio.load(path)["t"].numpy(), [1, 2, 300])


def test_map_location_for_a_legacy_checkpoint_saved_on_cuda(tmp_path):
    path = cifar_checkpoint(tmp_path / "gpu.th", location="cuda:0")
    ref = torch.load(path, weights_only=True, map_location="cpu")["state_dict"]
    for where in ("cpu", {"cuda:0": "cpu"}):
        exact(pio.load(path, map_location=where)["state_dict"]["module.conv1.weight"],
              ref["module.conv1.weight"])
    if not pf.cuda.is_available():
        with pytest.raises(CheckpointError, match="cuda:0.*map_location='cpu'") as info:
            pio.load(path)
        assert "gpu.th" in str(info.value)


# --- the tar format -----------------------------------------------------------------------------
class TarTensor:
    """A tensor of the tar format: pickled as the persistent id str(key)."""

    def __init__(self, key, storage_key, size, stride, offset=0):
        self.key, self.storage_key = key, storage_key
        self.size, self.stride, self.offset = size, stride, offset


def legacy_tar(path, obj, storages, tensors, views=(), tensor_class=None, members=None):
    """A checkpoint in the tar format, its members laid out as torch's old _save wrote them.
    `storages`: {int key: (NumPy array, location, torch storage class)}; `tensors`: the
    TarTensors `obj` names; `views`: (view key, root key, offset, numel). `members` can
    replace members' bytes (None: leave the member out)."""
    sys_info = pickle.dumps(SYS_INFO, protocol=2)
    storage_bytes = pickle.dumps(len(storages), protocol=2)
    for key, (array, location, storage_class) in storages.items():
        storage_bytes += pickle.dumps((key, location, storage_class), protocol=2)
        storage_bytes += storage_record(array)
    storage_bytes += pickle.dumps(list(views), protocol=2)
    tensor_bytes = pickle.dumps(len(tensors), protocol=2)
    for t in tensors:
        tensor_bytes += pickle.dumps((t.key, t.storage_key, tensor_class or torch.FloatTensor),
                                     protocol=2)
        n = len(t.size)
        tensor_bytes += struct.pack(f"<i4x{n}q{n}qq", n, *t.size, *t.stride, t.offset)

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            return str(o.key) if isinstance(o, TarTensor) else None
    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(obj)
    contents = {"sys_info": sys_info, "pickle": buf.getvalue(), "tensors": tensor_bytes,
                "storages": storage_bytes, **(members or {})}
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, payload in contents.items():
            if payload is None:
                continue
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def tar_checkpoint(path, location="cpu", **kwargs):
    storages = {101: (np.arange(12, dtype=np.float32), location, torch.FloatStorage),
                102: (np.int64([5, -6, 7]), location, torch.LongStorage),
                103: (np.float64([0.5, 1.5]), location, torch.DoubleStorage)}
    tensors = [TarTensor(1, 101, (3, 4), (4, 1)), TarTensor(2, 101, (2, 3), (1, 4), offset=1),
               TarTensor(3, 102, (3,), (1,)), TarTensor(4, 104, (2,), (2,)),
               TarTensor(5, 103, (), (), offset=1)]
    obj = {"w": tensors[0], "w_view": tensors[1], "n": tensors[2], "view": tensors[3],
           "s": tensors[4], "meta": {"epoch": 9, "names": ["a", "b"]}}
    return legacy_tar(path, obj, storages, tensors, views=[(104, 101, 6, 4)], **kwargs)


@pytest.mark.parametrize("use_mmap", [False, True])
def test_pf_loads_the_tar_format(tmp_path, use_mmap):
    path = tar_checkpoint(tmp_path / "old.tar.pt")
    ref = torch.load(path, weights_only=False)  # torch reads tar files only this way
    r = pio.load(path, mmap=use_mmap)
    assert r["meta"] == ref["meta"] == {"epoch": 9, "names": ["a", "b"]}
    for key in ("w", "w_view", "n", "view", "s"):
        exact(r[key], ref[key])
        assert r[key].stride() == ref[key].stride() and mapped(r[key]) == use_mmap, key
    r["w"]._data[1, 2] = -1.0  # tensors and storage views of one storage share it
    assert r["w_view"]._data[1, 1] == -1.0 and r["view"]._data[0] == -1.0


def test_map_location_for_a_tar_checkpoint_saved_on_cuda(tmp_path):
    path = tar_checkpoint(tmp_path / "gpu.pt", location="cuda:1")
    ref = torch.load(path, weights_only=False, map_location="cpu")
    for where in ("cpu", {"cuda:1": "cpu"}):
        exact(pio.load(path, map_location=where)["w_view"], ref["w_view"])
    if not pf.cuda.is_available():
        with pytest.raises(CheckpointError, match="'cuda:1'.*map_location='cpu'"):
            pio.load(path)


def test_tar_format_tensor_records_name_legacy_tensor_classes(tmp_path):
    path = tar_checkpoint(tmp_path / "cuda_class.pt", tensor_class=torch.cuda.DoubleTensor)
    exact(pio.load(path)["w"], torch.load(path, weights_only=False)["w"])
    # ...there only: elsewhere a tensor class is refused
    bad = legacy_stream(tmp_path / "cls.pt", {"c": torch.FloatTensor}, {})
    with pytest.raises(CheckpointError, match="torch.FloatTensor"):
        pio.load(bad)


# --- malicious files ----------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["object", "sys_info", "keys", "tar pickle", "tar tensors"])
def test_forbidden_globals_in_legacy_files_never_run(tmp_path, where):
    marker = tmp_path / "PWNED"
    evil = Evil(os.system, f"touch {marker}")
    path = tmp_path / "evil.pt"
    if where == "object":
        save_legacy({"w": torch.ones(2), "x": evil}, path)
    elif where in ("sys_info", "keys"):
        legacy_stream(path, {}, {}, **{"sys_info" if where == "sys_info" else "keys": evil})
    elif where == "tar pickle":
        legacy_tar(path, {"x": evil}, {}, [])
    else:
        tar_checkpoint(path, members={"tensors": pickle.dumps(1, 2) + pickle.dumps(evil, 2)})
    with pytest.raises(ForbiddenGlobalError, match="system") as info:
        pio.load(path)
    assert not marker.exists() and "evil.pt" in str(info.value)


def test_a_whole_pickled_model_is_refused(tmp_path):
    path = save_legacy(torch.nn.Linear(2, 2), tmp_path / "model.pt")
    with pytest.raises(ForbiddenGlobalError, match="torch.nn.modules.linear.Linear"):
        pio.load(path)


# --- broken and lying files ---------------------------------------------------------------------
def one_storage(**kwargs):
    storage = LegacyStorage(torch.FloatStorage, "0", 6)
    return {"t": FakeTensor(storage, 0, (2, 3), (3, 1))}, {"0": np.arange(6, dtype=np.float32)}


@pytest.mark.parametrize("kwargs, match", [
    (dict(magic=0x1950A86A20F9469CFC6D), "magic number"),
    (dict(magic="hello"), "magic number"),
    (dict(version=1000), "protocol version 1000"),
    (dict(sys_info=[1]), "sys_info"),
    (dict(keys=[]), "storage '0', but the file holds no data"),
    (dict(keys=["0", "0"]), "twice"),
    (dict(keys=["0", "9"]), "'9' but the pickle never uses it"),
    (dict(keys="0"), "list of storage keys"),
    (dict(counts={"0": 5}), "holds 5 elements in the file, but the pickle says 6"),
    (dict(counts={"0": 10 ** 9}), "storage '0' .*runs past"),
    (dict(counts={"0": -1}), "negative element count"),
    (dict(pickle_bytes=b"\x80\x02X\x01\x00\x00\x00aQ."), "storage reference"),
])
def test_broken_legacy_streams_are_refused(tmp_path, kwargs, match):
    obj, data = one_storage()
    path = legacy_stream(tmp_path / "bad.pt", obj, data, **kwargs)
    with pytest.raises(CheckpointError, match=match) as info:
        pio.load(path)
    assert "bad.pt" in str(info.value)


def test_the_broken_stream_helper_makes_valid_files(tmp_path):
    path = legacy_stream(tmp_path / "ok.pt", *one_storage())
    exact(pio.load(path)["t"], torch.load(path, weights_only=True)["t"])


def test_tensors_reading_past_their_storage_are_refused(tmp_path):
    storage = LegacyStorage(torch.FloatStorage, "0", 6)
    path = legacy_stream(tmp_path / "lie.pt", {"t": OldTensor(storage, 2, (2, 3), (3, 1))},
                         {"0": np.arange(6, dtype=np.float32)})
    with pytest.raises(CheckpointError, match="reads element 7"):
        pio.load(path)
    views = {"v": OldTensor(LegacyStorage(torch.FloatStorage, "0", 6, view=("1", 4, 5)),
                            0, (5,), (1,))}
    path = legacy_stream(tmp_path / "view.pt", views, {"0": np.arange(6, dtype=np.float32)})
    with pytest.raises(CheckpointError, match="covers elements 4..9"):
        pio.load(path)


@pytest.mark.parametrize("kind", ["stream", "tar"])
def test_truncated_legacy_files_are_refused(tmp_path, kind):
    good = tmp_path / "good.pt"
    if kind == "stream":
        save_legacy({"w": torch.arange(500.), "s": "text"}, good)
    else:
        tar_checkpoint(good)
    raw = good.read_bytes()
    pio.load(good)
    end = len(raw)
    if kind == "tar":  # a tar ends in zero blocks that hold nothing: cut the members instead
        with tarfile.open(good) as tar:
            end = max(m.offset_data + m.size for m in tar.getmembers())
    for n, cut in enumerate(sorted({2, 20, 40, 100, 600, end // 2, end - 100, end - 1})):
        bad = tmp_path / f"cut{n}.pt"
        bad.write_bytes(raw[:cut])
        with pytest.raises(CheckpointError) as info:
            pio.load(bad)
        assert bad.name in str(info.value)


@pytest.mark.parametrize("members, match", [
    ({"pickle": None}, "no file 'pickle'"),
    ({"storages": pickle.dumps(1, 2) + pickle.dumps((1, "cpu", "x"), 2)}, "storage header"),
    ({"storages": pickle.dumps(1, 2) + pickle.dumps((1, "cpu", torch.FloatStorage), 2)
      + struct.pack("<q", 1000) + b"\0" * 16}, "runs past its end"),
    ({"tensors": pickle.dumps(1, 2) + pickle.dumps((1, 999, None), 2)},
     "tensor '1' names storage '999'"),
    ({"tensors": pickle.dumps(1, 2) + pickle.dumps((1, 101, None), 2)
      + struct.pack("<i4x5q", 2, 3, 5, 5, 1, 0)}, "reads element 14"),
    ({"pickle": b"\x80\x02X\x02\x00\x00\x0077Q."}, "tensor '77'"),
])
def test_broken_tar_files_are_refused(tmp_path, members, match):
    path = tar_checkpoint(tmp_path / "bad.pt", members=members)
    with pytest.raises(CheckpointError, match=match) as info:
        pio.load(path)
    assert "bad.pt" in str(info.value)


def test_library_never_imports_torch_for_legacy_or_safetensors_files(tmp_path):
    paths = [save_legacy({"a": torch.ones(2)}, tmp_path / "s.pt"),
             tar_checkpoint(tmp_path / "t.pt"), tmp_path / "w.safetensors"]
    pio.save_safetensors({"a": pf.ones(2)}, paths[2])
    code = ("import sys, pipeflow.io as pio; [pio.load(p, mmap=m) for p in sys.argv[1:] "
            "for m in (False, True)]; assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code, *map(str, paths)], check=True)
