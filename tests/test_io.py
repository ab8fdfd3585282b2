"""Checkpoints (pipeflow.io): torch's zip format both ways with real torch, the restricted
unpickler (no code from a file ever runs), broken files, atomic writes, map_location, mmap."""
import collections
import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import pipeflow as pf
import pipeflow.io as pio
from pipeflow.io import CheckpointError, ForbiddenGlobalError, torch_zip

torch = pytest.importorskip("torch")

TORCH_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8,
                torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool]
PF_DTYPES = [pf.float16, pf.bfloat16, pf.float32, pf.float64, pf.int8, pf.int16, pf.int32,
             pf.int64, pf.uint8, pf.bool]


def as_np(t):
    """A pipeflow or torch tensor -> NumPy (bfloat16 as float32, for comparing)."""
    if isinstance(t, torch.Tensor):
        t = t.detach()
        return (t.float() if t.dtype == torch.bfloat16 else t).numpy()
    a = t._data if isinstance(t._data, np.ndarray) else t._data.get()
    return a.astype(np.float32) if a.dtype == pf.bfloat16.np else a


def same(a, b):
    x, y = as_np(a), as_np(b)
    assert x.shape == y.shape and x.dtype == y.dtype, (x.shape, y.shape, x.dtype, y.dtype)
    np.testing.assert_array_equal(x, y)


def torch_sample(dtype, shape=(3, 4)):
    g = torch.Generator().manual_seed(0)
    if dtype == torch.bool:
        return torch.rand(shape, generator=g) > 0.5
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=g) * 10).to(dtype)
    info = torch.iinfo(dtype)
    return torch.randint(max(info.min, -1000), min(info.max, 1000), shape, generator=g,
                         dtype=dtype)


def pf_sample(dtype, shape=(3, 4)):
    rng = np.random.default_rng(0)
    if dtype is pf.bool:
        return pf.tensor(rng.random(shape) > 0.5)
    if dtype.is_floating_point:
        return pf.tensor((rng.standard_normal(shape) * 10).astype(np.float32)).to(dtype)
    return pf.tensor(rng.integers(-100 if dtype.name != "uint8" else 0, 100, shape)).to(dtype)


PLAIN = {"int": 7, "neg": -123456789, "big": 2 ** 70, "float": 2.5, "nan_free": -0.0,
         "str": "héllo ✓", "none": None, "true": True, "false": False,
         "tuple": (1, "a", (2.0, None)), "list": [1, [2, [3]], {"k": "v"}],
         "long_tuple": (1, 2, 3, 4, 5), "int_keys": {0: "a", 10 ** 6: "b"},
         "tuple_keys": {(1, 2): 3},
         "bytes": b"\x00\xffab", "empty_bytes": b"", "bytearray": bytearray(b"xyz"),
         "set": {1, 2, 3}, "complex": 1 - 2j, "empty_dict": {}, "empty_list": []}


def check_plain(loaded):
    for key, value in PLAIN.items():
        assert loaded[key] == value and type(loaded[key]) is type(value), key


# --- torch -> pipeflow ---------------------------------------------------------------------------
def test_pf_loads_what_torch_saves(tmp_path):
    base = torch.arange(20, dtype=torch.float32).reshape(4, 5)
    obj = {f"t_{str(d).split('.')[1]}": torch_sample(d) for d in TORCH_DTYPES}
    obj.update(transposed=base.T, slice=base[1:3, 2:], row=base[2], base=base,
               param=torch.nn.Parameter(torch.randn(2, 3)),
               frozen=torch.nn.Parameter(torch.randn(2), requires_grad=False),
               grad=torch.ones(2, requires_grad=True), scalar=torch.tensor(3.5),
               empty=torch.zeros(0, 3), expanded=torch.arange(3.).expand(4, 3),
               nested={"a": [torch.ones(2), {"b": (torch.zeros(1, dtype=torch.int64), 5)}]},
               size=torch.Size([2, 3]), device=torch.device("cpu"), dtype=torch.float16,
               counter=collections.Counter("abca"), **PLAIN)
    path = tmp_path / "from_torch.pt"
    torch.save(obj, path)
    r = pio.load(path)

    for key in [k for k in obj if k.startswith("t_")] + ["transposed", "slice", "row", "base",
                                                          "scalar", "empty", "expanded"]:
        assert isinstance(r[key], pf.Tensor) and not isinstance(r[key], pf.nn.Parameter), key
        same(r[key], obj[key])
    assert r["t_bfloat16"].dtype == pf.bfloat16 and r["t_bool"].dtype == pf.bool
    assert r["transposed"].stride() == (1, 5) and r["slice"].stride() == (5, 1)
    assert isinstance(r["param"], pf.nn.Parameter) and r["param"].requires_grad
    same(r["param"].detach(), obj["param"])
    assert isinstance(r["frozen"], pf.nn.Parameter) and not r["frozen"].requires_grad
    assert r["grad"].requires_grad and not r["base"].requires_grad
    same(r["nested"]["a"][0], obj["nested"]["a"][0])
    same(r["nested"]["a"][1]["b"][0], obj["nested"]["a"][1]["b"][0])
    assert r["nested"]["a"][1]["b"][1] == 5
    assert r["size"] == (2, 3) and isinstance(r["size"], pf.Size)
    assert r["device"] == pf.device("cpu") and r["dtype"] is pf.float16
    assert r["counter"] == collections.Counter("abca")
    assert type(r["counter"]) is collections.Counter
    check_plain(r)

    # views of one storage stay views of one storage
    r["base"]._data[2, 3] = 100.0
    assert r["slice"]._data[1, 1] == 100.0 and r["row"]._data[3] == 100.0
    assert r["transposed"]._data[3, 2] == 100.0


def test_pf_loads_a_torch_state_dict_with_metadata(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    sd = model.state_dict()
    torch.save(sd, tmp_path / "m.pt")
    r = pio.load(tmp_path / "m.pt")
    assert type(r) is collections.OrderedDict and list(r) == list(sd)
    assert r._metadata == sd._metadata
    for k in sd:
        same(r[k], sd[k])


def test_pf_loads_torch_pickle_protocol_4(tmp_path):
    obj = {"w": torch.randn(3, 2), "s": "x" * 300, "t": (1, 2)}
    torch.save(obj, tmp_path / "p4.pt", pickle_protocol=4)
    r = pio.load(tmp_path / "p4.pt")
    same(r["w"], obj["w"])
    assert r["s"] == obj["s"] and r["t"] == (1, 2)


# --- pipeflow -> torch ---------------------------------------------------------------------------
def test_torch_loads_what_pf_saves(tmp_path):
    base = pf.arange(20, dtype=pf.float32).reshape(4, 5)
    obj = {f"t_{d.name}": pf_sample(d) for d in PF_DTYPES}
    obj.update(transposed=base.T, slice=base[1:3, 2:], base=base, flipped=base.flip(0),
               param=pf.nn.Parameter(pf.randn(2, 3)),
               frozen=pf.nn.Parameter(pf.randn(2), requires_grad=False),
               grad=pf.ones(2, requires_grad=True), scalar=pf.tensor(3.5),
               empty=pf.zeros(0, 3), nested={"a": [pf.ones(2), {"b": (pf.zeros(1), 5)}]},
               size=pf.Size([2, 3]), device=pf.device("cpu"), dtype=pf.bfloat16,
               counter=collections.Counter("abca"), np_scalar=np.float32(1.5),
               np_int=np.int64(3), **PLAIN)
    path = tmp_path / "from_pf.pt"
    pio.save(obj, path)
    r = torch.load(path, weights_only=True)

    for key in [k for k in obj if k.startswith("t_")] + ["transposed", "slice", "base",
                                                          "flipped", "scalar", "empty"]:
        assert type(r[key]) is torch.Tensor, key
        same(obj[key], r[key])
    assert r["t_bfloat16"].dtype == torch.bfloat16 and r["t_bool"].dtype == torch.bool
    assert r["transposed"].stride() == (1, 5)  # the layout is kept, as torch.save keeps it
    assert isinstance(r["param"], torch.nn.Parameter) and r["param"].requires_grad
    same(obj["param"].detach(), r["param"])
    assert isinstance(r["frozen"], torch.nn.Parameter) and not r["frozen"].requires_grad
    assert r["grad"].requires_grad and not r["base"].requires_grad
    same(obj["nested"]["a"][1]["b"][0], r["nested"]["a"][1]["b"][0])
    assert r["size"] == torch.Size([2, 3]) and type(r["size"]) is torch.Size
    assert r["device"] == torch.device("cpu") and r["dtype"] is torch.bfloat16
    assert r["counter"] == collections.Counter("abca")
    assert r["np_scalar"] == 1.5 and type(r["np_scalar"]) is float and r["np_int"] == 3
    check_plain(r)
    # and the same file reads back in pipeflow
    back = pio.load(path)
    for key in ("transposed", "slice", "t_bfloat16", "t_int8"):
        same(back[key], obj[key])
    check_plain(back)


def test_state_dict_round_trips_through_torch_modules(tmp_path):
    tm = torch.nn.Linear(3, 2)
    sd = collections.OrderedDict((k, pf.tensor(v.detach().numpy()))
                                 for k, v in tm.state_dict().items())
    sd._metadata = {"": {"version": 1}}
    pio.save(sd, tmp_path / "sd.pt")
    fresh = torch.nn.Linear(3, 2)
    fresh.load_state_dict(torch.load(tmp_path / "sd.pt", weights_only=True))
    same(pf.tensor(fresh.weight.detach().numpy()), tm.weight)
    assert torch.load(tmp_path / "sd.pt", weights_only=True)._metadata == sd._metadata


def test_optimizer_state_round_trips_both_ways(tmp_path):
    def check(state, ref_state):
        assert list(state["state"]) == [0, 1]
        assert state["param_groups"] == ref_state["param_groups"]
        for i in (0, 1):
            for k in ("step", "exp_avg", "exp_avg_sq"):
                same(state["state"][i][k], ref_state["state"][i][k])

    params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(2))]
    opt = torch.optim.Adam(params, lr=0.1, betas=(0.9, 0.999))
    sum((p ** 2).sum() for p in params).backward()
    opt.step()
    opt.step()
    sd = opt.state_dict()
    torch.save(sd, tmp_path / "opt_torch.pt")
    mine = pio.load(tmp_path / "opt_torch.pt")
    check(mine, sd)
    assert mine["param_groups"][0]["betas"] == (0.9, 0.999)
    assert mine["state"][0]["step"].item() == 2.0

    pio.save(mine, tmp_path / "opt_pf.pt")
    theirs = torch.load(tmp_path / "opt_pf.pt", weights_only=True)
    check(theirs, sd)
    opt2 = torch.optim.Adam(params, lr=0.1)
    opt2.load_state_dict(theirs)  # torch accepts it as an optimizer state

    plain = {"state": {0: {"step": pf.tensor(3.0), "exp_avg": pf.randn(2, 2)}},
             "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 1]}]}
    pio.save(plain, tmp_path / "plain.pt")
    for loaded in (torch.load(tmp_path / "plain.pt", weights_only=True),
                   pio.load(tmp_path / "plain.pt")):
        assert loaded["param_groups"] == plain["param_groups"]
        same(plain["state"][0]["exp_avg"], loaded["state"][0]["exp_avg"])
        assert float(loaded["state"][0]["step"]) == 3.0


# --- pipeflow -> pipeflow ------------------------------------------------------------------------
def test_identical_tensors_are_written_once_and_tied_storage_stays_tied(tmp_path):
    t = pf.arange(6, dtype=pf.float32)
    alias = pf.Tensor._wrap(t._data)           # another tensor object over the same memory
    lst = [1, 2]
    obj = {"a": t, "b": t, "alias": alias, "reshaped": t.reshape(2, 3), "l1": lst, "l2": lst}
    pio.save(obj, tmp_path / "x.pt")
    names = zipfile.ZipFile(tmp_path / "x.pt").namelist()
    assert [n for n in names if "/data/" in n] == ["x/data/0"]
    r = pio.load(tmp_path / "x.pt")
    assert r["a"] is r["b"] and r["l1"] is r["l2"]
    r["alias"]._data[1] = 42
    assert r["a"]._data[1] == 42 and r["reshaped"]._data[0, 1] == 42
    t2 = torch.load(tmp_path / "x.pt", weights_only=True)
    assert t2["a"] is t2["b"]
    assert t2["alias"].untyped_storage().data_ptr() == t2["a"].untyped_storage().data_ptr()


def test_many_tensors_and_long_containers(tmp_path):
    # more than 256 memo entries (LONG_BINPUT / LONG_BINGET), more than 1000 items per batch
    obj = {f"layer{i}.weight": pf.full((2,), float(i)) for i in range(300)}
    obj["long"] = list(range(2500))
    obj["wide"] = {i: str(i) for i in range(1500)}
    pio.save(obj, tmp_path / "many.pt")
    for r in (pio.load(tmp_path / "many.pt"), torch.load(tmp_path / "many.pt", weights_only=True)):
        assert float(r["layer299.weight"][1]) == 299.0 and len(r) == 302
        assert r["long"] == obj["long"] and r["wide"] == obj["wide"]


def test_big_endian_checkpoints_are_byte_swapped(tmp_path):
    storage = FakeStorage(torch.IntStorage, "0", 3)
    payload = torch_pickle({"t": FakeTensor(storage, 0, (3,), (1,))})
    path = zip_with(tmp_path / "be.pt", payload, {"0": np.array([1, 2, 300], ">i4").tobytes()},
                    byteorder="big")
    np.testing.assert_array_equal(pio.load(path)["t"].numpy(), [1, 2, 300])
    np.testing.assert_array_equal(torch.load(path, weights_only=True)["t"].numpy(), [1, 2, 300])


def test_saving_through_a_symlink_keeps_the_link(tmp_path):
    (tmp_path / "real.pt").write_bytes(b"old")
    os.symlink("real.pt", tmp_path / "latest.pt")
    pio.save({"a": pf.ones(2)}, tmp_path / "latest.pt")
    assert os.path.islink(tmp_path / "latest.pt")
    same(pio.load(tmp_path / "real.pt")["a"], pf.ones(2))


def test_file_layout_matches_torch(tmp_path):
    path = tmp_path / "my.model.pt"
    pio.save({"w": pf.ones(3, 3), "b": pf.zeros(5, dtype=pf.int64)}, path)
    ref = tmp_path / "ref.pt"
    torch.save({"w": torch.ones(3, 3), "b": torch.zeros(5, dtype=torch.int64)}, ref)
    mine, theirs = zipfile.ZipFile(path), zipfile.ZipFile(ref)
    strip = lambda z: [n.split("/", 1)[1] for n in z.namelist()]  # noqa: E731
    assert strip(mine) == strip(theirs)
    assert mine.namelist()[0] == "my.model/data.pkl"  # named after the file, as torch does
    for name in ("version", "byteorder", ".format_version", ".storage_alignment"):
        assert mine.read(f"my.model/{name}") == theirs.read(f"ref/{name}")
    assert len(mine.read("my.model/.data/serialization_id")) == 40
    raw = path.read_bytes()
    for info in mine.infolist():
        assert info.compress_type == zipfile.ZIP_STORED
        n, e = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
        assert (info.header_offset + 30 + n + e) % 64 == 0, info.filename
    same(pio.load(path, mmap=True)["w"], torch.load(path, weights_only=True, mmap=True)["w"])


def local_headers(path):
    """(name, flags, data offset, what follows the data) of each record, from the bytes."""
    raw = path.read_bytes()
    out = []
    for info in zipfile.ZipFile(path).infolist():
        flags, n, e = struct.unpack("<H18xHH", raw[info.header_offset + 6:info.header_offset + 30])
        start = info.header_offset + 30 + n + e
        out.append((info.filename.split("/", 1)[1], flags, start,
                    raw[start + info.file_size:start + info.file_size + 4]))
    return out


def test_records_are_laid_out_byte_for_byte_as_torch_does(tmp_path, monkeypatch):
    obj = {"w": pf.ones(3, 3), "e": pf.zeros(0), "b": pf.zeros(5, dtype=pf.int64)}
    pio.save(obj, tmp_path / "mine.pt")
    torch.save({"w": torch.ones(3, 3), "e": torch.zeros(0),
                "b": torch.zeros(5, dtype=torch.int64)}, tmp_path / "theirs.pt")
    mine, theirs = local_headers(tmp_path / "mine.pt"), local_headers(tmp_path / "theirs.pt")
    # same flags (0x0808, 0x0800 for the empty record) and data descriptors after the data
    assert [(n, f, after) for n, f, _, after in mine] == [(n, f, after) for n, f, _, after in theirs]
    # torch's readers that compute offsets from the sizes (instead of reading the directory)
    # find every storage: its debug mode checks each one against the directory
    monkeypatch.setenv("TORCH_SERIALIZATION_DEBUG", "1")
    same(torch.load(tmp_path / "mine.pt", weights_only=True)["b"], obj["b"])
    from torch.utils.serialization import config
    config.load.calculate_storage_offsets = True  # (monkeypatch can't undo a config field)
    try:
        same(torch.load(tmp_path / "mine.pt", weights_only=True, mmap=True)["w"], obj["w"])
        meta = torch.load(tmp_path / "mine.pt", weights_only=True, map_location="meta")
    finally:
        config.load.calculate_storage_offsets = False
    offsets = {n: start for n, _, start, _ in mine}
    assert meta["b"].untyped_storage()._checkpoint_offset == offsets["data/2"]


def test_zip64_records_when_sizes_need_64_bits(tmp_path, monkeypatch):
    from pipeflow.io import zipwriter
    monkeypatch.setattr(zipwriter, "ZIP64_THRESHOLD", 100)  # as if 100 bytes were 4 GiB
    obj = {"x": pf.arange(100, dtype=pf.float32), "y": pf.ones(2, dtype=pf.int8)}
    path = tmp_path / "z64.pt"
    pio.save(obj, path)
    assert zipfile.ZipFile(path).testzip() is None
    for r in (pio.load(path), pio.load(path, mmap=True), torch.load(path, weights_only=True)):
        same(r["x"], obj["x"])
        same(r["y"], obj["y"])


def test_round_trip_through_file_objects():
    buf = io.BytesIO(b"header")
    buf.seek(6)
    pio.save({"w": pf.arange(4), "s": "x"}, buf)  # the archive starts after other data
    buf.seek(6)
    r = pio.load(buf)
    same(r["w"], pf.arange(4))
    buf.seek(6)
    same(torch.load(buf, weights_only=True)["w"], pf.arange(4))

    class Pipe:  # writes only: no seek, no tell
        def __init__(self):
            self.chunks = []

        def write(self, data):
            self.chunks.append(bytes(data))
    pipe = Pipe()
    pio.save({"w": pf.arange(4)}, pipe)
    same(pio.load(io.BytesIO(b"".join(pipe.chunks)))["w"], pf.arange(4))


def test_mmap_loads_copy_on_write_views_of_the_file(tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"w": torch.arange(12.).reshape(3, 4), "v": torch.arange(5, dtype=torch.int16)},
               path)
    r = pio.load(path, mmap=True)
    same(r["w"], torch.arange(12.).reshape(3, 4))
    same(r["v"], torch.arange(5, dtype=torch.int16))
    base = r["w"]._data
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    assert not isinstance(base, np.ndarray)  # a view of the mapping, not a copy
    r["w"]._data[0, 0] = -1.0  # private: the file doesn't change
    assert pio.load(path)["w"]._data[0, 0] == 0.0


# --- the restricted unpickler --------------------------------------------------------------------
def zip_with(path, pickle_bytes, records=None, prefix="archive", byteorder="little"):
    """A torch-style archive holding `pickle_bytes` as data.pkl and `records` as data/<key>."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{prefix}/data.pkl", pickle_bytes)
        z.writestr(f"{prefix}/byteorder", byteorder)
        for key, data in (records or {}).items():
            z.writestr(f"{prefix}/data/{key}", data)
        z.writestr(f"{prefix}/version", "3\n")
    return path


class Evil:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("how", ["os.system", "eval", "exec", "subprocess", "getattr"])
def test_pickles_naming_other_globals_are_refused_without_running(tmp_path, how, protocol):
    marker = tmp_path / "PWNED"
    command = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').close()"
    evil = {"os.system": Evil(os.system, command), "eval": Evil(eval, code),
            "exec": Evil(exec, code),
            "subprocess": Evil(subprocess.call, ["touch", str(marker)]),
            "getattr": Evil(getattr, "abc", "upper")}[how]
    payload = pickle.dumps({"w": 1, "evil": evil}, protocol=protocol)
    path = zip_with(tmp_path / "evil.pt", payload)
    with pytest.raises(CheckpointError) as info:
        pio.load(path)
    assert not marker.exists()
    assert str(path) in str(info.value)
    if protocol > 0:  # protocol 0 is refused at its first (text) opcode
        assert isinstance(info.value, ForbiddenGlobalError)
        expected = {"os.system": ("posix.system", "os.system"), "eval": ("builtins.eval",),
                    "exec": ("builtins.exec",), "subprocess": ("subprocess.call",),
                    "getattr": ("builtins.getattr",)}[how]
        assert info.value.name in expected and info.value.name in str(info.value)


def test_a_forbidden_global_inside_a_real_torch_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "mixed.pt"
    torch.save({"w": torch.ones(2), "x": Evil(os.system, f"touch {marker}")}, path)
    with pytest.raises(ForbiddenGlobalError, match="system"):
        pio.load(path)
    assert not marker.exists()


def raw_pickle(*parts):
    return b"\x80\x02" + b"".join(parts) + b"."


@pytest.mark.parametrize("payload, match", [
    # REDUCE on an allowed global that isn't callable, and on a plain string
    (raw_pickle(b"ctorch\nfloat32\n)R"), "REDUCE"),
    (raw_pickle(b"X\x09\x00\x00\x00os.system)R"), "REDUCE"),
    # NEWOBJ on something not allowed
    (raw_pickle(b"ctorch\nfloat32\n)\x81"), "NEWOBJ"),
    # INST and OBJ (protocol 0/1 instance creation), EXT1 (extension registry)
    (b"(S'x'\nios\nsystem\n.", "not supported"),
    (raw_pickle(b"(cos\nsystem\nX\x01\x00\x00\x00xo"), "blocked"),
    (raw_pickle(b"\x82\x01"), "not supported"),
    # BUILD on a list, APPEND on a dict, SETITEM on a list
    (raw_pickle(b"]}b"), "BUILD"),
    (raw_pickle(b"}K\x01a"), "APPEND"),
    (raw_pickle(b"]K\x01K\x02s"), "SETITEM"),
    # a blocked module even under a harmless-looking name, and posix directly
    (raw_pickle(b"csys\nmodules\n"), "blocked"),
    (raw_pickle(b"cposix\nsystem\n"), "blocked"),
    # _codecs.encode with a non-text codec; _rebuild_from_type_v2 of a non-rebuild function
    (raw_pickle(b"c_codecs\nencode\nX\x01\x00\x00\x00xX\x03\x00\x00\x00hex\x86R"), "encode"),
    (raw_pickle(b"ctorch._tensor\n_rebuild_from_type_v2\n(ccollections\nOrderedDict\n"
                b"ctorch\nTensor\n)}tR"), "rebuild function"),
    # malformed: truncated, stack underflow, missing memo entry, persistent id of another kind
    (b"\x80\x02X\xff\x00\x00\x00ab", "ends"),
    (raw_pickle(b"t"), "MARK"),
    (raw_pickle(b"h\x05"), "memo"),
    (raw_pickle(b"X\x03\x00\x00\x00fooK\x01\x86Q"), "storage reference"),
    (raw_pickle(b"(X\x04\x00\x00\x00evilK\x01K\x02K\x03K\x04tQ"), "kind"),
])
def test_malformed_or_unsafe_pickles_are_refused(tmp_path, payload, match):
    path = zip_with(tmp_path / "bad.pt", payload)
    with pytest.raises(CheckpointError, match=match):
        pio.load(path)


# --- broken files --------------------------------------------------------------------------------
class FakeStorage:
    def __init__(self, storage_type, key, numel, location="cpu"):
        self.pid = ("storage", storage_type, key, location, numel)


class FakeTensor:
    def __init__(self, storage, offset, size, stride, requires_grad=False):
        self.args = (storage, offset, size, stride, requires_grad, collections.OrderedDict())

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, self.args


def torch_pickle(obj):
    """Pickle `obj` the way torch.save does, with FakeStorage as persistent ids."""
    class P(pickle.Pickler):
        def persistent_id(self, o):
            return o.pid if isinstance(o, FakeStorage) else None
    buf = io.BytesIO()
    P(buf, protocol=2).dump(obj)
    return buf.getvalue()


def fake_checkpoint(path, size=(2, 3), stride=(3, 1), offset=0, numel=6, stored=6, key="0",
                    location="cpu"):
    storage = FakeStorage(torch.FloatStorage, key, numel, location)
    data = np.arange(stored, dtype=np.float32).tobytes()
    return zip_with(path, torch_pickle({"t": FakeTensor(storage, offset, size, stride)}),
                    {"0": data})


def test_the_fake_checkpoint_helper_makes_valid_files(tmp_path):
    path = fake_checkpoint(tmp_path / "ok.pt", size=(3, 2), stride=(1, 3))
    same(pio.load(path)["t"], torch.arange(6.).reshape(2, 3).T)
    same(pio.load(path)["t"], torch.load(path, weights_only=True)["t"])


@pytest.mark.parametrize("kwargs, match", [
    (dict(key="7"), "no record archive/data/7"),
    (dict(numel=100), "has only 24 bytes"),
    (dict(size=(3, 3)), "reads element 8"),
    (dict(offset=1), "reads element 6"),
    (dict(stride=(5, 1)), "reads element 7"),
    (dict(size=(2, 3), stride=(3, -1)), "stride"),
    (dict(offset=-1), "storage offset"),
    (dict(size=(2, 3), stride=(3,)), "different lengths"),
])
def test_lying_sizes_and_missing_storages_are_refused(tmp_path, kwargs, match):
    path = fake_checkpoint(tmp_path / "lie.pt", **kwargs)
    with pytest.raises(CheckpointError, match=match) as info:
        pio.load(path)
    assert str(path) in str(info.value)


def test_missing_garbage_and_empty_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such") as info:
        pio.load(tmp_path / "nope.pt")
    assert isinstance(info.value, FileNotFoundError) and "nope.pt" in str(info.value)
    (tmp_path / "garbage.pt").write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match="wrong magic") as info:
        pio.load(tmp_path / "garbage.pt")
    assert "garbage.pt" in str(info.value)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        pio.load(tmp_path / "empty.pt")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(CheckpointError, match="data.pkl"):
        pio.load(tmp_path / "other.zip")


def test_truncated_and_corrupted_files_are_refused(tmp_path):
    good = tmp_path / "good.pt"
    pio.save({"w": pf.arange(2000, dtype=pf.float32), "s": "text"}, good)
    raw = good.read_bytes()
    for n, cut in enumerate([4, 30, 100, len(raw) // 2, len(raw) - 100, len(raw) - 22,
                             len(raw) - 1]):
        bad = tmp_path / f"cut{n}.pt"
        bad.write_bytes(raw[:cut])
        with pytest.raises(CheckpointError) as info:
            pio.load(bad)
        assert bad.name in str(info.value)
    # bytes missing from the middle: the directory points at the wrong places
    hole = tmp_path / "hole.pt"
    hole.write_bytes(raw[:3000] + raw[3100:])
    with pytest.raises(CheckpointError):
        pio.load(hole)
    # flipped bytes in a storage, and in the pickle: the CRC catches them
    info = zipfile.ZipFile(good).getinfo("good/data/0")
    for where in (info.header_offset + 200, 100):
        flipped = bytearray(raw)
        flipped[where] ^= 0xFF
        bad = tmp_path / "flipped.pt"
        bad.write_bytes(bytes(flipped))
        with pytest.raises(CheckpointError, match="CRC|pickle"):
            pio.load(bad)


def test_unsupported_torch_dtypes_name_the_dtype(tmp_path):
    torch.save({"c": torch.ones(2, dtype=torch.complex64)}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="complex"):
        pio.load(tmp_path / "c.pt")
    torch.save({"u": torch.ones(2, dtype=torch.uint16)}, tmp_path / "u.pt")
    with pytest.raises(CheckpointError, match="uint16"):
        pio.load(tmp_path / "u.pt")


# --- atomic writes -------------------------------------------------------------------------------
class Unsavable:
    def __reduce__(self):
        raise RuntimeError("boom")


def test_a_failing_save_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"old contents")
    obj = collections.OrderedDict([("w", pf.randn(100, 100)), ("bad", [1, Unsavable()])])
    with pytest.raises(TypeError, match=r"obj\['bad'\]\[1\]"):
        pio.save(obj, path)
    assert path.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["ckpt.pt"]
    with pytest.raises(TypeError, match="from_numpy"):
        pio.save({"a": np.zeros(3)}, tmp_path / "new.pt")
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_a_crash_while_writing_storages_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    pio.save({"w": pf.ones(3)}, path)
    before = path.read_bytes()
    real = torch_zip._storage_chunks

    def failing(record):
        if record.key == "1":
            raise OSError("disk full")
        return real(record)

    monkeypatch.setattr(torch_zip, "_storage_chunks", failing)
    with pytest.raises(OSError, match="disk full"):
        pio.save({"a": pf.zeros(1000), "b": pf.zeros(1000)}, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ckpt.pt"]
    monkeypatch.setattr(torch_zip, "_storage_chunks", real)
    pio.save({"a": pf.zeros(10)}, path)  # replaces it, keeping its permissions
    assert os.listdir(tmp_path) == ["ckpt.pt"]
    same(pio.load(path)["a"], pf.zeros(10))


def test_save_gives_new_files_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        pio.save({"a": 1}, tmp_path / "p.pt")
    finally:
        os.umask(umask)
    assert (os.stat(tmp_path / "p.pt").st_mode & 0o777) == 0o644


# --- map_location --------------------------------------------------------------------------------
def test_map_location_for_a_checkpoint_saved_on_cuda(tmp_path):
    path = fake_checkpoint(tmp_path / "gpu.pt", location="cuda:0")
    expected = torch.arange(6.).reshape(2, 3)
    if not pf.cuda.is_available():
        with pytest.raises(CheckpointError, match="map_location='cpu'") as info:
            pio.load(path)
        assert "cuda:0" in str(info.value) and "gpu.pt" in str(info.value)
        with pytest.raises(CheckpointError, match="CUDA is not available"):
            pio.load(path, map_location="cuda")
    seen = []
    for where in ("cpu", pf.device("cpu"), {"cuda:0": "cpu"}, {"cuda:0": pf.device("cpu")},
                  lambda storage, location: seen.append(location) or storage):
        t = pio.load(path, map_location=where)["t"]
        assert t.device == "cpu"
        same(t, expected)
    assert seen == ["cuda:0"]
    with pytest.raises(CheckpointError, match="devices"):
        pio.load(path, map_location="tpu")


def test_map_location_on_a_cpu_checkpoint(tmp_path):
    path = tmp_path / "c.pt"
    pio.save({"t": pf.arange(3)}, path)
    assert pio.load(path, map_location={"cuda:1": "cuda:0"})["t"].device == "cpu"
    if not pf.cuda.is_available():
        with pytest.raises(CheckpointError, match="CUDA"):
            pio.load(path, map_location="cuda:0")


@pytest.mark.cuda
@pytest.mark.skipif(not pf.cuda.is_available(), reason="needs CuPy and an NVIDIA GPU")
def test_cuda_tensors_save_and_load(tmp_path):
    t = pf.arange(12, dtype=pf.float32).reshape(3, 4).cuda()
    path = tmp_path / "g.pt"
    pio.save({"t": t, "tt": t.T}, path)
    r = pio.load(path)
    assert r["t"].device == "cuda:0"
    same(r["tt"], t.T)
    assert pio.load(path, map_location="cpu")["t"].device == "cpu"
    same(torch.load(path, weights_only=True, map_location="cpu")["tt"], t.T)
    assert pio.load(fake_checkpoint(tmp_path / "f.pt"), map_location="cuda")["t"].is_cuda


def test_library_never_imports_torch(tmp_path):
    code = ("import sys, pipeflow as pf, pipeflow.io as pio; p = sys.argv[1];"
            "pio.save({'a': pf.ones(2), 'b': [1, 'x']}, p); pio.load(p, mmap=True);"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "n.pt")], check=True)
