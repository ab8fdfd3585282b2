"""DataLoader's public API against torch.utils.data.DataLoader: batch contents, shapes and
dtypes, samplers, collate functions, __getitems__, IterableDataset sharding, worker
processes (init, info, seeds, persistence, spawn), shared-memory batch lifetime, seeded and
generator shuffles, resumable state (state_dict / load_state_dict) and argument errors.

Worker crashes, timeouts and leaks are tested in test_loader_failures.py."""
import collections
import functools
import itertools
import multiprocessing
import os
import pathlib
import pickle
import random
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import pipeflow as pf
from pipeflow.data import (BatchSampler, DataLoader, Dataset, IterableDataset, RandomSampler,
                           SequentialSampler, Subset, SubsetRandomSampler, TensorDataset,
                           WeightedRandomSampler, get_worker_info, sample_generator)

FORK = multiprocessing.get_context("fork")
WAIT = 60  # the timeout of loaders with workers: a hang fails the test instead of the suite


def _torch():
    # imported lazily: spawned workers import this module and must not pay for torch
    return pytest.importorskip("torch")


def loader(dataset, **kw):
    if kw.get("num_workers"):
        kw.setdefault("timeout", WAIT)
    return DataLoader(dataset, **kw)


# --- batches as NumPy, and their comparison ------------------------------------------------
def pf_np(batch, where="batch"):
    """A pipeflow batch with NumPy copies at its leaves; every array leaf must be a
    pipeflow Tensor (not a NumPy array, not a torch tensor)."""
    if isinstance(batch, pf.Tensor):
        assert batch.device.type == "cpu", f"{where}: on {batch.device}"
        return np.array(batch.numpy(), copy=True)
    assert not isinstance(batch, np.ndarray), f"{where}: a NumPy array, not a pipeflow Tensor"
    if isinstance(batch, dict):
        return type(batch)((k, pf_np(v, f"{where}[{k!r}]")) for k, v in batch.items())
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(pf_np(v, f"{where}.{f}") for f, v in zip(batch._fields, batch)))
    if isinstance(batch, (list, tuple)):
        return type(batch)(pf_np(v, f"{where}[{i}]") for i, v in enumerate(batch))
    return batch


def torch_np(batch):
    torch = sys.modules["torch"]
    if isinstance(batch, torch.Tensor):
        return batch.numpy().copy()
    if isinstance(batch, dict):
        return type(batch)((k, torch_np(v)) for k, v in batch.items())
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(torch_np(v) for v in batch))
    if type(batch) is tuple and all(isinstance(v, str) for v in batch):
        # torch passes strings through as the transposed tuple (list(zip(*batch))) when they
        # sit in a tuple or list sample, as a list elsewhere: the issue asks for lists
        return list(batch)
    if isinstance(batch, (list, tuple)):
        return type(batch)(torch_np(v) for v in batch)
    return batch


def assert_same(got, want, where="batch"):
    """Same structure (container types, keys, lengths), and at the leaves arrays of the same
    dtype, shape and values, or equal Python objects of the same type."""
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), f"{where}: {type(got).__name__}, not an array"
        assert got.dtype == want.dtype, f"{where}: dtype {got.dtype}, expected {want.dtype}"
        assert got.shape == want.shape, f"{where}: shape {got.shape}, expected {want.shape}"
        np.testing.assert_array_equal(got, want, err_msg=where)
    elif isinstance(want, dict):
        assert isinstance(got, dict), f"{where}: {type(got).__name__}, expected a dict"
        assert list(got) == list(want), f"{where}: keys {list(got)}, expected {list(want)}"
        for key in want:
            assert_same(got[key], want[key], f"{where}[{key!r}]")
    elif isinstance(want, (list, tuple)):
        assert type(got) is type(want), \
            f"{where}: {type(got).__name__}, expected {type(want).__name__}"
        assert len(got) == len(want), f"{where}: length {len(got)}, expected {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{where}[{i}]")
    else:
        assert type(got) is type(want) and got == want, f"{where}: {got!r}, expected {want!r}"


def pf_batches(dataset, **kw):
    return [pf_np(b, f"batch {i}") for i, b in enumerate(loader(dataset, **kw))]


def torch_batches(dataset, **kw):
    torch = _torch()
    return [torch_np(b) for b in torch.utils.data.DataLoader(dataset, **kw)]


# --- datasets (module level: spawned workers unpickle them) ---------------------------------
Pair = collections.namedtuple("Pair", "image label")


class Samples(Dataset):
    """Map-style samples of NumPy arrays and scalars, Python numbers, bools and strings, in a
    tuple, list, dict (nested) or namedtuple."""

    def __init__(self, n=23, kind="tuple"):
        self.n, self.kind = n, kind

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        image = np.arange(12, dtype=np.float32).reshape(3, 4) * (i + 1)
        if self.kind == "tuple":
            return (image, i, i * 0.25, i % 3 == 0, f"item{i}", np.int16(-i),
                    np.array(i / 8, dtype=np.float16), np.array([i % 2 == 0, True]),
                    np.arange(i, i + 5, dtype=np.uint8), np.bool_(i % 2))
        if self.kind == "list":
            return [image, i, f"s{i}"]
        if self.kind == "dict":
            return {"image": image, "label": i, "weight": 1.0 / (i + 1), "name": f"n{i}",
                    "meta": {"id": np.int32(i), "tags": [f"a{i}", f"b{i}"],
                             "pair": (np.full(2, i, np.float64), i * 2)}}
        if self.kind == "namedtuple":
            return Pair(image, i)
        if self.kind == "empty":  # e.g. no boxes in an image: a batch of zero bytes
            return np.zeros((0, 4), np.float32), np.zeros((2, 0), np.int64)
        raise ValueError(self.kind)


def raw_batch(dataset, indices):
    return [dataset[i] for i in indices]


def collate_dict(samples):
    """A custom collate_fn that builds its batch with pipeflow ops."""
    images = pf.stack([pf.tensor(s[0]) for s in samples])
    return {"image": images * 2 + 1, "label": pf.tensor([s[1] for s in samples]),
            "mean": images.mean(dim=(1, 2))}


def collate_tuple(samples):
    return (pf.tensor(np.stack([s[0] for s in samples])), [s[4] for s in samples],
            len(samples))


def collate_identity(samples):
    return samples


def collate_mixup(samples):
    """A batch-level augmentation drawn in collate_fn."""
    lam = sample_generator().random()
    x = np.stack([s[0] for s in samples])
    return pf.tensor(lam * x + (1 - lam) * x[::-1]), pf.tensor([s[1] for s in samples])


class Batched(Dataset):
    """Has __getitems__ (and a __getitem__ that must not be used); counts its calls."""

    def __init__(self, n, counter):
        self.n, self.counter = n, counter

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        raise AssertionError("__getitem__ was called although the dataset has __getitems__")

    def __getitems__(self, indices):
        with self.counter.get_lock():
            self.counter.value += 1
        kinds = f"{type(indices).__name__}/{type(indices[0]).__name__}"
        return [(np.full(2, i, np.int64), len(indices), kinds) for i in indices]


def _shard(mode, n, info):
    """The items of worker `info` (None: the main process, which reads all of a single
    worker's share)."""
    w, k = (0, 1) if info is None else (info.id, info.num_workers)
    if mode == "interleave":
        return list(range(w, n, k))
    if mode == "chunks":
        per = -(-n // k)
        return list(range(w * per, min(n, (w + 1) * per)))
    if mode == "skewed":       # worker w has 2w + 3 items: the first worker ends first
        return [100 * w + j for j in range(2 * w + 3)]
    if mode == "skewed-down":  # the last worker ends first
        return [100 * w + j for j in range(2 * (k - w) + 1)]
    if mode == "first-short":  # the first worker has one batch, the others three
        return [100 * w + j for j in range(2 if w == 0 else 6)]
    raise ValueError(mode)


class Stream(IterableDataset):
    def __init__(self, mode="interleave", n=13):
        self.mode, self.n = mode, n

    def __iter__(self):
        return iter(_shard(self.mode, self.n, get_worker_info()))

    def __len__(self):
        return len(_shard(self.mode, self.n, None))


class CountedStream(IterableDataset):
    """Items (value, pid); counts the calls of __iter__ (in any process)."""

    def __init__(self, counter):
        self.counter = counter

    def __iter__(self):
        with self.counter.get_lock():
            self.counter.value += 1
        return iter([(v, os.getpid()) for v in _shard("skewed", 0, get_worker_info())])


class StringStream(IterableDataset):
    def __iter__(self):
        info = get_worker_info()
        w, k = (0, 1) if info is None else (info.id, info.num_workers)
        return iter([f"line{i}" for i in range(w, 10, k)])


@functools.lru_cache(None)
def _torch_stream_class():
    torch = _torch()

    class TorchStream(torch.utils.data.IterableDataset):
        def __init__(self, mode="interleave", n=13):
            self.mode, self.n = mode, n

        def __iter__(self):
            return iter(_shard(self.mode, self.n, torch.utils.data.get_worker_info()))

        def __len__(self):
            return len(_shard(self.mode, self.n, None))

    return TorchStream


class Pids(Dataset):
    def __init__(self, n=8):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        info = get_worker_info()
        return i, os.getpid(), -1 if info is None else info.id


class Info(Dataset):
    tag = "info-dataset"

    def __init__(self, n=8):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        info = get_worker_info()
        if info is None:
            return i, -1, -1, "none", "none"
        return (i, info.id, info.num_workers, str(info.seed),
                f"{type(info.dataset).__name__}:{info.dataset.tag}:{info.dataset.n}")


class GlobalRandom(Dataset):
    """Augmentations drawn from the process-global NumPy and Python streams."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return i, np.random.random(), random.random()


class Augmented(Dataset):
    """Samples with noise from sample_generator(): a different draw for every sample."""

    def __init__(self, n=30):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.full(3, float(i)) + sample_generator().standard_normal(3), i


class Blocks(Dataset):
    def __init__(self, n=200):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.arange(64, dtype=np.float32).reshape(4, 16) + 1000 * i, i


def blocks_batch(indices):
    return (np.stack([np.arange(64, dtype=np.float32).reshape(4, 16) + 1000 * i
                      for i in indices]), np.array(indices, np.int64))


class Ragged(Dataset):
    """Sample i is a sequence of length i + 1: batches grow, so ring slots must grow."""

    def __init__(self, n=40):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.arange(i + 1, dtype=np.int64) + 10 * i


def pad_collate(samples):
    out = np.full((len(samples), max(len(s) for s in samples)), -1, np.int64)
    for row, s in zip(out, samples):
        row[:len(s)] = s
    return pf.tensor(out), pf.tensor([len(s) for s in samples])


def record_init(folder, worker_id):
    info = get_worker_info()
    text = "none" if info is None else f"{info.id} {info.num_workers}"
    (pathlib.Path(folder) / f"{worker_id}-{os.getpid()}").write_text(text)


# ===========================================================================================
# batches equal torch's
# ===========================================================================================
@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("kind", ["tuple", "list", "dict", "namedtuple"])
@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_equal_torch(kind, num_workers, drop_last):
    ds = Samples(23, kind)
    want = torch_batches(ds, batch_size=5, drop_last=drop_last)
    pf_loader = loader(ds, batch_size=5, drop_last=drop_last, num_workers=num_workers)
    got = [pf_np(b, f"batch {i}") for i, b in enumerate(pf_loader)]
    assert len(got) == len(want) == len(pf_loader) == (4 if drop_last else 5)
    assert_same(got, want)


def test_collated_dtypes_follow_torch():
    (image, ints, floats, bools, strings, i16, f16, bool_arrays, u8, np_bools), = \
        pf_batches(Samples(3), batch_size=3)
    assert (image.dtype, ints.dtype, floats.dtype, bools.dtype, i16.dtype, f16.dtype,
            bool_arrays.dtype, u8.dtype, np_bools.dtype) == \
        (np.float32, np.int64, np.float64, np.bool_, np.int16, np.float16, np.bool_,
         np.uint8, np.bool_)
    assert strings == ["item0", "item1", "item2"]
    assert image.shape == (3, 3, 4) and f16.shape == (3,) and bool_arrays.shape == (3, 2)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_default_batch_size_is_one(num_workers):
    ds = Samples(4, "namedtuple")
    assert_same(pf_batches(ds, num_workers=num_workers), torch_batches(ds))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_explicit_sampler_and_batch_sampler(num_workers):
    ds = Samples(23, "dict")
    order = [22, 3, 3, 0, 17, 9, 12, 5]  # any iterable of indices, repeats allowed
    for kw in (dict(sampler=order, batch_size=3), dict(sampler=order, batch_size=3,
                                                          drop_last=True)):
        pf_loader = loader(ds, num_workers=num_workers, **kw)
        want = torch_batches(ds, **kw)
        assert len(pf_loader) == len(want)
        assert_same([pf_np(b) for b in pf_loader], want)
    pf_loader = loader(ds, num_workers=num_workers, sampler=SequentialSampler(ds),
                       batch_size=6)
    assert_same([pf_np(b) for b in pf_loader], torch_batches(ds, batch_size=6))

    batches = [[0, 1], [5, 2, 3], [7], [22, 21, 20, 19]]  # uneven batches, any order
    for batch_sampler in (batches, BatchSampler(order, 4, False),
                          BatchSampler(SequentialSampler(ds), 7, True)):
        pf_loader = loader(ds, batch_sampler=batch_sampler, num_workers=num_workers)
        want = torch_batches(ds, batch_sampler=list(batch_sampler))
        assert len(pf_loader) == len(want)
        assert_same([pf_np(b) for b in pf_loader], want)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_empty_dataset(num_workers):
    pf_loader = loader(Samples(0), batch_size=4, num_workers=num_workers)
    assert len(pf_loader) == 0 and list(pf_loader) == [] and list(pf_loader) == []


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batch_size_none_disables_automatic_batching(num_workers):
    """torch: batch_size=None yields the samples one by one, arrays converted to tensors
    (default_convert), tuples as lists."""
    ds = Samples(5)
    want = torch_batches(ds, batch_size=None)
    assert_same(pf_batches(ds, batch_size=None, num_workers=num_workers), want)


# ===========================================================================================
# collate functions, pipeflow samples, __getitems__
# ===========================================================================================
@pytest.mark.parametrize("num_workers", [0, 2])
def test_custom_collate_fn_returning_a_dict_of_pipeflow_tensors(num_workers):
    ds = Samples(11)
    got = pf_batches(ds, batch_size=4, collate_fn=collate_dict, num_workers=num_workers)
    assert len(got) == 3
    for k, batch in enumerate(got):
        samples = raw_batch(ds, range(4 * k, min(11, 4 * k + 4)))
        images = np.stack([s[0] for s in samples])
        assert_same(batch, {"image": images * 2 + 1,
                            "label": np.array([s[1] for s in samples], np.int64),
                            "mean": images.mean(axis=(1, 2))})


@pytest.mark.parametrize("num_workers", [0, 2])
def test_custom_collate_fn_returning_a_tuple(num_workers):
    ds = Samples(11)
    got = pf_batches(ds, batch_size=4, collate_fn=collate_tuple, num_workers=num_workers)
    for k, batch in enumerate(got):
        samples = raw_batch(ds, range(4 * k, min(11, 4 * k + 4)))
        assert_same(batch, (np.stack([s[0] for s in samples]), [s[4] for s in samples],
                            len(samples)))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_identity_collate_fn_without_arrays(num_workers):
    """collate_fn=lambda b: b over samples with no array at all (ints, strings): a batch
    that needs no shared memory."""
    ds = Info(6)
    got = pf_batches(ds, batch_size=4, collate_fn=collate_identity, num_workers=num_workers)
    assert [[s[0] for s in b] for b in got] == [[0, 1, 2, 3], [4, 5]]
    assert all(type(b) is list and type(b[0]) is tuple for b in got)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batches_of_empty_arrays_equal_torch(num_workers):
    ds = Samples(6, "empty")
    assert_same(pf_batches(ds, batch_size=2, num_workers=num_workers),
                torch_batches(ds, batch_size=2))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batches_of_strings_only(num_workers):
    got = pf_batches(StringStream(), batch_size=4, num_workers=num_workers)
    assert sorted(s for b in got for s in b) == sorted(f"line{i}" for i in range(10))
    assert all(type(b) is list for b in got)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_pipeflow_tensor_samples_and_tensor_dataset(num_workers):
    x = pf.tensor(np.arange(60, dtype=np.float32).reshape(20, 3))
    y = pf.tensor(np.arange(20) % 4)
    ds = TensorDataset(x, y)
    got = pf_batches(ds, batch_size=6, shuffle=True, seed=5, num_workers=num_workers)
    order = list(RandomSampler(ds, seed=5))
    for k, batch in enumerate(got):
        idx = order[6 * k:6 * k + 6]
        assert_same(batch, [x.numpy()[idx], y.numpy()[idx]])
    # a custom collate_fn sees the samples one by one
    got = pf_batches(ds, batch_size=6, num_workers=num_workers,
                     collate_fn=lambda s: pf.stack([a for a, _ in s]).sum(dim=1))
    assert_same(got, [x.numpy()[i:i + 6].sum(1) for i in range(0, 20, 6)])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_tensor_dataset_batch_indices_are_checked(num_workers):
    """Rows are gathered without NumPy's own bounds check, so the dataset checks them:
    negative indices count from the end (as t[i] does), out-of-range ones are named."""
    x = pf.tensor(np.arange(30, dtype=np.int32).reshape(10, 3))
    ds = TensorDataset(x, pf.tensor(np.arange(10)))
    got = pf_batches(ds, batch_sampler=[[-1, 0, -10], [9, 3]], num_workers=num_workers)
    assert_same(got, [[x.numpy()[[9, 0, 0]], np.array([9, 0, 0])],
                      [x.numpy()[[9, 3]], np.array([9, 3])]])
    for bad in (10, -11):
        with pytest.raises(IndexError, match=f"index {bad} is out of range for a dataset of "
                                             "10 samples"):
            pf_batches(ds, batch_sampler=[[0, 1], [2, bad, 4]], num_workers=num_workers)
    for bad, dtype in ((1.5, "float64"), (True, "bool")):
        with pytest.raises(IndexError, match=f"indices must be integers, got {dtype}"):
            pf_batches(ds, batch_sampler=[[bad, bad]], num_workers=num_workers)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_getitems_is_called_once_per_batch(num_workers):
    counter = FORK.Value("i", 0)
    ds = Batched(22, counter)
    pf_loader = loader(ds, batch_size=5, num_workers=num_workers)
    got = [pf_np(b) for b in pf_loader]
    assert counter.value == len(pf_loader) == len(got) == 5
    for k, (values, sizes, kinds) in enumerate(got):
        idx = list(range(5 * k, min(22, 5 * k + 5)))
        assert_same(values, np.repeat(np.array(idx, np.int64)[:, None], 2, axis=1))
        assert sizes.tolist() == [len(idx)] * len(idx)
        assert kinds == ["list/int"] * len(idx)  # as torch: a list of Python ints
    torch_counter = FORK.Value("i", 0)
    torch_batches(Batched(22, torch_counter), batch_size=5)
    assert torch_counter.value == 5


# ===========================================================================================
# IterableDataset
# ===========================================================================================
@pytest.mark.parametrize("num_workers", [0, 1, 2, 3])
@pytest.mark.parametrize("mode", ["interleave", "chunks", "skewed", "skewed-down",
                                  "first-short"])
def test_iterable_dataset_order_equals_torch(mode, num_workers):
    want = torch_batches(_torch_stream_class()(mode), batch_size=2, num_workers=num_workers)
    got = pf_batches(Stream(mode), batch_size=2, num_workers=num_workers)
    assert [b.tolist() for b in got] == [b.tolist() for b in want]


@pytest.mark.parametrize("num_workers", [0, 2, 3])
def test_iterable_dataset_drop_last_equals_torch(num_workers):
    """torch drops each worker's last partial batch."""
    want = torch_batches(_torch_stream_class()("skewed"), batch_size=2, drop_last=True,
                         num_workers=num_workers)
    got = pf_batches(Stream("skewed"), batch_size=2, drop_last=True, num_workers=num_workers)
    assert [b.tolist() for b in got] == [b.tolist() for b in want]
    assert all(len(b) == 2 for b in got)


def test_iterable_dataset_with_persistent_workers_over_epochs():
    want = [b.tolist() for b in torch_batches(_torch_stream_class()("skewed"), batch_size=2,
                                              num_workers=2)]
    pf_loader = loader(Stream("skewed"), batch_size=2, num_workers=2, persistent_workers=True)
    for epoch in range(3):
        assert [b.tolist() for b in pf_loader] == want, f"epoch {epoch}"


def test_iterable_dataset_persistent_workers_keep_their_processes():
    """Persistent workers serve every epoch, and each worker starts its stream once per
    epoch (a worker that ran out must not start the dataset over for a prefetched task)."""
    counter = FORK.Value("i", 0)
    pf_loader = loader(CountedStream(counter), batch_size=2, num_workers=2,
                       persistent_workers=True)
    pids = []
    for epoch in range(3):
        batches = list(pf_loader)
        assert [b[0].tolist() for b in batches] == \
            [[0, 1], [100, 101], [2], [102, 103], [104]], f"epoch {epoch}"
        pids.append({p for b in batches for p in b[1].tolist()})
        assert counter.value == 2 * (epoch + 1), f"__iter__ calls after epoch {epoch}"
    assert len(pids[0]) == 2 and pids[0] == pids[1] == pids[2]


def test_iterable_dataset_len():
    torch = _torch()
    for drop_last in (False, True):
        want = len(torch.utils.data.DataLoader(_torch_stream_class()("interleave", 13),
                                               batch_size=4, drop_last=drop_last))
        assert len(loader(Stream("interleave", 13), batch_size=4, drop_last=drop_last)) \
            == want == (3 if drop_last else 4)


# ===========================================================================================
# worker processes
# ===========================================================================================
def test_worker_init_fn_is_called_once_per_worker(tmp_path):
    init = functools.partial(record_init, str(tmp_path))
    pf_loader = loader(Pids(12), batch_size=2, num_workers=3, worker_init_fn=init)
    sample_pids = {int(pid) for _, pids, _ in pf_loader for pid in pids}
    calls = sorted(p.name for p in tmp_path.iterdir())
    assert len(calls) == 3
    assert sorted(int(c.split("-")[0]) for c in calls) == [0, 1, 2]
    init_pids = {int(c.split("-")[1]) for c in calls}
    assert init_pids == sample_pids and os.getpid() not in init_pids
    # get_worker_info() is already set while worker_init_fn runs
    assert sorted((tmp_path / c).read_text() for c in calls) == ["0 3", "1 3", "2 3"]


def test_worker_init_fn_runs_again_for_each_epoch_unless_persistent(tmp_path):
    for persistent, folder in ((False, tmp_path / "a"), (True, tmp_path / "b")):
        folder.mkdir()
        pf_loader = loader(Pids(8), batch_size=2, num_workers=2, persistent_workers=persistent,
                           worker_init_fn=functools.partial(record_init, str(folder)))
        for _ in range(2):
            assert len(list(pf_loader)) == 4
        assert len(list(folder.iterdir())) == (2 if persistent else 4)


def test_get_worker_info_in_getitem():
    assert get_worker_info() is None
    got = pf_batches(Info(8), batch_size=2)
    assert all(b[1].tolist() == [-1, -1] and b[3] == ["none", "none"] for b in got)
    got = pf_batches(Info(8), batch_size=2, num_workers=2, seed=1234)
    assert [b[0].tolist() for b in got] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    for k, (_, ids, nums, _, datasets) in enumerate(got):
        assert ids.tolist() == [k % 2] * 2  # batches go to the workers round-robin, as torch
        assert nums.tolist() == [2, 2]
        assert datasets == ["Info:info-dataset:8"] * 2
    assert get_worker_info() is None


def test_worker_info_seeds_differ_between_workers():
    """torch: WorkerInfo.seed is base_seed + worker id, one seed per worker."""
    got = pf_batches(Info(8), batch_size=2, num_workers=2, seed=1234)
    seeds = collections.defaultdict(set)
    for _, ids, _, batch_seeds, _ in got:
        for wid, seed in zip(ids.tolist(), batch_seeds):
            seeds[wid].add(seed)
    assert sorted(seeds) == [0, 1] and all(len(s) == 1 for s in seeds.values())
    assert seeds[0] != seeds[1], f"both workers report seed {seeds[0]}"


def test_global_random_streams_differ_between_workers_and_epochs():
    """torch seeds each worker's `random` and NumPy streams from a base seed drawn anew for
    every iterator: draws differ between workers and from one epoch to the next."""
    pf_loader = loader(GlobalRandom(), batch_size=2, num_workers=2, seed=3)
    epochs = [[(b[1].tolist(), b[2].tolist()) for b in pf_loader] for _ in range(2)]
    first = epochs[0]
    assert first[0] != first[1], "workers 0 and 1 drew the same numbers"
    assert epochs[0] != epochs[1], "the same 'random' augmentations in every epoch"


@pytest.mark.parametrize("persistent", [True, False])
def test_persistent_workers_keep_their_processes(persistent):
    pf_loader = loader(Pids(8), batch_size=2, num_workers=2, persistent_workers=persistent)
    epochs = []
    for _ in range(3):
        batches = list(pf_loader)
        assert [b[0].tolist() for b in batches] == [[0, 1], [2, 3], [4, 5], [6, 7]]
        epochs.append({int(p) for b in batches for p in b[1]})
    assert all(len(pids) == 2 and os.getpid() not in pids for pids in epochs)
    if persistent:
        assert epochs[0] == epochs[1] == epochs[2]
    else:
        assert not (epochs[0] & epochs[1]) and not (epochs[1] & epochs[2])


def test_persistent_workers_survive_an_epoch_left_early():
    """torch keeps persistent workers when an epoch is abandoned (break): the next epoch
    reuses them, and starts from its first batch."""
    pf_loader = loader(Pids(8), batch_size=2, num_workers=2, persistent_workers=True)
    first = list(pf_loader)
    pids = {int(p) for b in first for p in b[1]}
    for batch in pf_loader:
        assert batch[0].tolist() == [0, 1]
        break
    again = list(pf_loader)
    assert [b[0].tolist() for b in again] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert {int(p) for b in again for p in b[1]} == pids


def ring_blocks(pf_loader):
    return dict(pf_loader._spare_ring.blocks)  # (worker, slot) -> its shared.Block


@pytest.mark.parametrize("hold", ["last", "some", "break"])
def test_workers_of_a_new_epoch_start_on_the_last_ones_slots(hold):
    """Workers that do not persist are started anew every epoch, but on the same ring:
    slots already written (and on a GPU, page-locked) are reused, and never one that
    holds a batch still in use, nor one the last workers were writing when they stopped."""
    ds = Samples(40, "dict")
    want = torch_batches(ds, batch_size=4)
    pf_loader = loader(ds, batch_size=4, num_workers=2)
    kept = []
    for k, batch in enumerate(pf_loader):
        if hold == "some" and k % 3 == 0:
            kept.append((k, batch))
        if hold == "break" and k == 4:
            break
    kept.append(("last", batch))
    del batch
    blocks = [ring_blocks(pf_loader)]
    for epoch in (2, 3):
        assert_same([pf_np(b) for b in pf_loader], want, f"epoch {epoch}")
        blocks.append(ring_blocks(pf_loader))
    assert len(blocks[0]) >= 4
    for earlier, later in zip(blocks, blocks[1:]):  # (a slot may be first written later)
        assert all(later[key] is block for key, block in earlier.items()), \
            "new workers made their slots anew"
    for k, batch in kept:  # the batches kept through the later epochs are intact
        assert_same(pf_np(batch), want[4 if k == "last" and hold == "break" else
                                        len(want) - 1 if k == "last" else k], f"kept {k}")


@pytest.mark.parametrize("prefetch_factor", [1, 2, 5])
def test_prefetch_factor(prefetch_factor):
    ds = Samples(23, "dict")
    got = pf_batches(ds, batch_size=3, num_workers=2, prefetch_factor=prefetch_factor)
    assert_same(got, torch_batches(ds, batch_size=3))


@pytest.mark.parametrize("prefetch_factor", [0, -1])
def test_prefetch_factor_below_one_is_not_an_empty_epoch(prefetch_factor):
    """torch: ValueError for a negative prefetch_factor, AssertionError for 0 on iter()."""
    try:
        pf_loader = loader(Samples(6), batch_size=2, num_workers=2,
                           prefetch_factor=prefetch_factor)
        batches = list(pf_loader)
    except (ValueError, AssertionError):
        return
    assert len(batches) == 3


@pytest.mark.parametrize("num_workers", [0, 2])
def test_pin_memory_without_a_gpu_and_cpu_device(num_workers):
    ds = Samples(10, "dict")
    want = torch_batches(ds, batch_size=4)
    for kw in (dict(pin_memory=True), dict(device="cpu"), dict(pin_memory=True, device="cpu")):
        got = pf_batches(ds, batch_size=4, num_workers=num_workers, **kw)  # asserts CPU leaves
        assert_same(got, want)


@pytest.mark.parametrize("context", ["spawn", "spawn-context-object"])
def test_spawn_multiprocessing_context(context, tmp_path):
    ctx = "spawn" if context == "spawn" else multiprocessing.get_context("spawn")
    ds = Samples(12, "dict")
    pf_loader = loader(ds, batch_size=4, num_workers=2, multiprocessing_context=ctx,
                       worker_init_fn=functools.partial(record_init, str(tmp_path)))
    want = torch_batches(ds, batch_size=4)
    assert_same([pf_np(b) for b in pf_loader], want)
    assert sorted(p.read_text() for p in tmp_path.iterdir()) == ["0 2", "1 2"]
    # the next epoch's spawned workers start on the slots the first ones wrote
    assert_same([pf_np(b) for b in pf_loader], want, "epoch 2")


def test_two_live_iterators_each_get_the_whole_epoch():
    """torch (workers not persistent): every iterator has workers of its own, so
    zip(loader, loader) pairs each batch with itself."""
    pf_loader = loader(Pids(8), batch_size=2, num_workers=2)
    pairs = [(a[0].tolist(), b[0].tolist()) for a, b in zip(pf_loader, pf_loader)]
    assert pairs == [([0, 1], [0, 1]), ([2, 3], [2, 3]), ([4, 5], [4, 5]), ([6, 7], [6, 7])]


# ===========================================================================================
# shuffling
# ===========================================================================================
def labels(pf_loader):
    return [int(i) for _, i in pf_loader for i in i.tolist()]


def test_seeded_shuffle_is_independent_of_workers_and_changes_every_epoch():
    ds = Augmented(20)
    runs = {}
    for num_workers in (0, 2):
        pf_loader = loader(ds, batch_size=3, shuffle=True, seed=123, num_workers=num_workers)
        runs[num_workers] = [labels(pf_loader) for _ in range(3)]
    assert runs[0] == runs[2]
    epochs = runs[0]
    assert all(sorted(e) == list(range(20)) for e in epochs)
    assert epochs[0] != list(range(20))
    assert epochs[0] != epochs[1] != epochs[2] != epochs[0]
    other = loader(ds, batch_size=3, shuffle=True, seed=124)
    assert labels(other) != epochs[0]
    unseeded = [labels(loader(ds, batch_size=3, shuffle=True)) for _ in range(2)]
    assert unseeded[0] != unseeded[1]


def test_generator_gives_reproducible_shuffles():
    ds = Augmented(20)

    def run(seed, **kw):
        pf_loader = loader(ds, batch_size=4, shuffle=True,
                           generator=pf.Generator().manual_seed(seed), **kw)
        return [labels(pf_loader) for _ in range(2)]

    first = run(3)
    assert first == run(3) == run(3, num_workers=2)
    assert first[0] != first[1] and sorted(first[1]) == list(range(20))
    assert run(4) != first
    # a RandomSampler with the generator, given as sampler=
    sampled = [labels(loader(ds, batch_size=4, sampler=RandomSampler(
        ds, generator=pf.Generator().manual_seed(3)))) for _ in range(2)]
    assert sampled[0] == sampled[1] and sorted(sampled[0]) == list(range(20))


def test_sample_generator_in_collate_fn_does_not_depend_on_workers():
    """The loader promises batches that do not depend on num_workers, and a seeded loader
    reproducible ones: a collate_fn drawing from sample_generator() too."""
    runs = [pf_batches(Augmented(16), batch_size=4, shuffle=True, seed=8,
                       collate_fn=collate_mixup, num_workers=nw) for nw in (0, 0, 2)]
    assert_same(runs[0], runs[2], "2 workers vs main process")
    assert_same(runs[0], runs[1], "a second run in the main process")


# ===========================================================================================
# batch lifetime in shared memory
# ===========================================================================================
def test_batches_stay_valid_while_referenced():
    """Hold the first 10 batches of a 2-worker loader (and views of the next ones) over 50
    batches: the ring must not reuse a slot some array still refers to."""
    held, views, arrays = [], [], []
    count = 0
    for k, (x, i) in enumerate(loader(Blocks(200), batch_size=4, num_workers=2)):
        want = blocks_batch(range(4 * k, 4 * k + 4))
        assert_same([pf_np(x), pf_np(i)], list(want), f"batch {k}")
        if k < 10:
            held.append((x, i))
        elif k < 20:
            views.append((k, x[1:3]))  # only a view of the batch survives
        elif k < 30:
            arrays.append((k, x.numpy()))  # only a NumPy view of it survives
        count += 1
    assert count == 50
    for k, (x, i) in enumerate(held):
        assert_same([pf_np(x), pf_np(i)], list(blocks_batch(range(4 * k, 4 * k + 4))),
                    f"held batch {k}")
    for k, view in views:
        assert_same(pf_np(view), blocks_batch(range(4 * k, 4 * k + 4))[0][1:3], f"view {k}")
    for k, array in arrays:
        assert_same(array, blocks_batch(range(4 * k, 4 * k + 4))[0], f"array {k}")


def test_batches_outlive_their_workers_and_loader():
    import gc
    pf_loader = loader(Blocks(16), batch_size=4, num_workers=2)
    first = next(iter(pf_loader))
    rest = list(pf_loader)  # a second epoch: new workers, the first ones are gone
    del pf_loader
    gc.collect()
    assert_same([pf_np(first[0]), pf_np(first[1])], list(blocks_batch(range(4))))
    assert_same([pf_np(rest[-1][0]), pf_np(rest[-1][1])], list(blocks_batch(range(12, 16))))


@pytest.mark.parametrize("num_workers,persistent", [(0, False), (2, False), (2, True)])
def test_changing_a_batch_in_place_does_not_change_later_batches(num_workers, persistent):
    pf_loader = loader(Blocks(48), batch_size=4, num_workers=num_workers,
                       persistent_workers=persistent)
    for epoch in range(2):
        for k, (x, i) in enumerate(pf_loader):
            assert_same([pf_np(x), pf_np(i)], list(blocks_batch(range(4 * k, 4 * k + 4))),
                        f"epoch {epoch} batch {k}")
            x.add_(1.5)
            x[0] = -7.0
            i[...] = -1
        assert k == 11


@pytest.mark.parametrize("hold", [False, True])
def test_growing_batches_with_a_padding_collate_fn(hold):
    ds = Ragged(40)
    pf_loader = loader(ds, batch_size=4, num_workers=2, collate_fn=pad_collate)
    kept = []
    for k, batch in enumerate(pf_loader):
        want = pad_collate(raw_batch(ds, range(4 * k, 4 * k + 4)))
        assert_same(pf_np(batch), pf_np(want), f"batch {k}")
        if hold:
            kept.append((k, batch, want))
    for k, batch, want in kept:
        assert_same(pf_np(batch), pf_np(want), f"held batch {k}")
    # and shrinking: the same batches in reverse
    got = pf_batches(ds, batch_size=4, num_workers=2, collate_fn=pad_collate,
                     sampler=range(39, -1, -1))
    assert_same(got, [pf_np(pad_collate(raw_batch(ds, range(i, i - 4, -1))))
                      for i in range(39, -1, -4)])


# ===========================================================================================
# state_dict / load_state_dict
# ===========================================================================================
def epochs_of(pf_loader, count):
    return [[pf_np(b) for b in pf_loader] for _ in range(count)]


@functools.lru_cache(None)
def augmented_reference(seed=11, n=30):
    """Two uninterrupted shuffled epochs of Augmented (4 per batch), in the main process."""
    return epochs_of(loader(Augmented(n), batch_size=4, shuffle=True, seed=seed), 2)


@pytest.mark.parametrize("first_workers,resumed_workers", [(0, 0), (2, 2), (0, 2), (2, 0)])
def test_state_dict_resumes_the_epoch_in_a_new_loader(first_workers, resumed_workers):
    reference = augmented_reference()
    assert len(reference[0]) == 8
    # the reference is shuffled and augmented, and each epoch differs
    labels0 = [int(i) for _, lab in reference[0] for i in lab]
    assert labels0 != list(range(30)) and sorted(labels0) == list(range(30))
    x, lab = reference[0][0]
    assert not np.allclose(x, lab[:, None].astype(np.float64))
    with pytest.raises(AssertionError):
        assert_same(reference[0][0], reference[1][0])

    first = loader(Augmented(), batch_size=4, shuffle=True, seed=11,
                   num_workers=first_workers)
    it = iter(first)
    assert_same([pf_np(next(it)) for _ in range(3)], reference[0][:3])
    state = pickle.loads(pickle.dumps(first.state_dict()))
    # the first loader goes on unaffected
    assert_same([pf_np(b) for b in it], reference[0][3:])
    assert_same([pf_np(b) for b in first], reference[1])
    del it, first

    resumed = loader(Augmented(), batch_size=4, shuffle=True,  # no seed: it comes with state
                     num_workers=resumed_workers)
    resumed.load_state_dict(state)
    assert_same([pf_np(b) for b in resumed], reference[0][3:], "resumed epoch")
    assert_same([pf_np(b) for b in resumed], reference[1], "next epoch")


@pytest.mark.parametrize("num_workers,persistent", [(0, False), (2, False), (2, True)])
def test_an_iterator_after_a_break_runs_the_next_epoch(num_workers, persistent):
    """torch draws a new order for every iterator: a loop that breaks after some steps, or
    next(iter(loader)) taken twice, must not see the same batches again. The state still
    points into the abandoned epoch, so a loader given it finishes that epoch."""
    reference = augmented_reference()
    pf_loader = loader(Augmented(), batch_size=4, shuffle=True, seed=11,
                       num_workers=num_workers, persistent_workers=persistent)
    for k, batch in enumerate(pf_loader):
        if k == 2:
            break
    state = pf_loader.state_dict()
    assert state["epoch"] == 0 and state["batches_served"] == 3
    assert_same(pf_np(next(iter(pf_loader))), reference[1][0], "the next epoch's first batch")
    assert_same([pf_np(b) for b in pf_loader], epochs_of(
        loader(Augmented(), batch_size=4, shuffle=True, seed=11), 3)[2], "the epoch after")
    resumed = loader(Augmented(), batch_size=4, shuffle=True, num_workers=num_workers)
    resumed.load_state_dict(state)
    assert_same([pf_np(b) for b in resumed], reference[0][3:], "the abandoned epoch's rest")


def test_an_older_iterator_keeps_its_epoch_and_leaves_the_state_alone():
    reference = augmented_reference()
    pf_loader = loader(Augmented(), batch_size=4, shuffle=True, seed=11)
    old, new = iter(pf_loader), iter(pf_loader)  # old: epoch 0, left open; new: epoch 1
    assert_same([pf_np(b) for b in old], reference[0])
    assert pf_loader.state_dict()["epoch"] == 1 and pf_loader.state_dict()["batches_served"] == 0
    assert_same(pf_np(next(new)), reference[1][0])
    assert pf_loader.state_dict()["batches_served"] == 1


def test_state_dict_at_an_epoch_boundary():
    reference = augmented_reference()
    first = loader(Augmented(), batch_size=4, shuffle=True, seed=11)
    list(first)
    resumed = loader(Augmented(), batch_size=4, shuffle=True, num_workers=2)
    resumed.load_state_dict(first.state_dict())
    assert_same([pf_np(b) for b in resumed], reference[1])


def test_state_dict_resumes_in_another_process(tmp_path):
    reference = augmented_reference()
    first = loader(Augmented(), batch_size=4, shuffle=True, seed=11, num_workers=2)
    it = iter(first)
    for _ in range(3):
        next(it)
    (tmp_path / "state.pkl").write_bytes(pickle.dumps(first.state_dict()))
    del it, first
    script = textwrap.dedent(f"""
        import pickle, sys
        import numpy as np
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        from test_loader import Augmented, loader
        resumed = loader(Augmented(), batch_size=4, shuffle=True, num_workers=2)
        with open({str(tmp_path / "state.pkl")!r}, "rb") as f:
            resumed.load_state_dict(pickle.load(f))
        out = {{}}
        for epoch in range(2):
            for k, (x, i) in enumerate(resumed):
                out[f"{{epoch}}-{{k}}-x"], out[f"{{epoch}}-{{k}}-i"] = x.numpy(), i.numpy()
        np.savez({str(tmp_path / "out.npz")!r}, **out)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=WAIT)
    out = np.load(tmp_path / "out.npz")
    got = [[[out[f"{e}-{k}-x"], out[f"{e}-{k}-i"]] for k in range(count)]
           for e, count in ((0, 5), (1, 8))]
    assert len(out.files) == 2 * (5 + 8)
    assert_same(got, [[list(b) for b in reference[0][3:]], [list(b) for b in reference[1]]])


def test_state_dict_with_a_generator():
    def make(**kw):
        return loader(Augmented(), batch_size=4, shuffle=True, **kw)

    reference = epochs_of(make(generator=pf.Generator().manual_seed(3)), 2)
    first = make(generator=pf.Generator().manual_seed(3))
    it = iter(first)
    for _ in range(3):
        next(it)
    state = first.state_dict()
    del it
    for resumed in (make(generator=pf.Generator().manual_seed(3)), make(num_workers=2)):
        resumed.load_state_dict(state)
        assert_same([pf_np(b) for b in resumed], reference[0][3:])
        assert_same([pf_np(b) for b in resumed], reference[1])


def test_state_dict_with_an_explicit_random_sampler():
    """The order comes from the sampler's own seed; the loader's seed= drives the
    augmentations. Resuming must keep both."""
    def make():
        ds = Augmented()
        return loader(ds, batch_size=4, sampler=RandomSampler(ds, seed=5), seed=7)

    reference = epochs_of(make(), 2)
    first = make()
    it = iter(first)
    for _ in range(3):
        next(it)
    state = first.state_dict()
    del it
    resumed = make()
    resumed.load_state_dict(state)
    assert_same([pf_np(b) for b in resumed], reference[0][3:])
    assert_same([pf_np(b) for b in resumed], reference[1])


def test_load_state_dict_into_a_loader_whose_persistent_workers_run():
    reference = augmented_reference()
    first = loader(Augmented(), batch_size=4, shuffle=True, seed=11)
    it = iter(first)
    for _ in range(3):
        next(it)
    state = first.state_dict()
    del it
    other = loader(Augmented(), batch_size=4, shuffle=True, seed=99, num_workers=2,
                   persistent_workers=True)
    list(other)  # its workers are up, started with seed 99
    other.load_state_dict(state)
    assert_same([pf_np(b) for b in other], reference[0][3:])
    assert_same([pf_np(b) for b in other], reference[1])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_state_dict_of_an_iterable_dataset_does_not_restart_silently(num_workers):
    """A loader over an IterableDataset either resumes after the batches served, or refuses
    to save or load a mid-epoch state: it must not silently start the epoch over."""
    reference = [b.tolist() for b in loader(Stream("interleave", 20), batch_size=2,
                                            num_workers=num_workers)]
    first = loader(Stream("interleave", 20), batch_size=2, num_workers=num_workers)
    it = iter(first)
    assert [next(it).tolist() for _ in range(3)] == reference[:3]
    try:
        state = first.state_dict()
        resumed = loader(Stream("interleave", 20), batch_size=2, num_workers=num_workers)
        resumed.load_state_dict(state)
    except (NotImplementedError, TypeError, ValueError, RuntimeError):
        return
    assert [b.tolist() for b in resumed] == reference[3:]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_next_after_the_end_does_not_start_another_epoch(num_workers):
    pf_loader = loader(Augmented(8), batch_size=4, shuffle=True, seed=1,
                       num_workers=num_workers)
    it = iter(pf_loader)
    assert len(list(it)) == 2
    for _ in range(2):
        with pytest.raises(StopIteration):
            next(it)
    assert pf_loader.state_dict()["epoch"] == 1
    assert pf_loader.state_dict()["batches_served"] == 0


# ===========================================================================================
# argument errors, as torch
# ===========================================================================================
MAP_ERRORS = [
    dict(shuffle=True, sampler=[0, 1]),
    dict(batch_sampler=[[0]], batch_size=2),
    dict(batch_sampler=[[0]], shuffle=True),
    dict(batch_sampler=[[0]], sampler=[0]),
    dict(batch_sampler=[[0]], drop_last=True),
    dict(batch_size=None, drop_last=True),
    dict(batch_size=0),
    dict(num_workers=-1),
    dict(num_workers=-2, batch_size=4),
    dict(timeout=-1),
    dict(prefetch_factor=2),                   # needs num_workers > 0
    dict(num_workers=2, prefetch_factor=-1),
    dict(persistent_workers=True),             # needs num_workers > 0
    dict(multiprocessing_context="spawn"),     # needs num_workers > 0
    dict(num_workers=2, multiprocessing_context="no-such-method"),
]
ITERABLE_ERRORS = [dict(shuffle=True), dict(sampler=[0, 1]), dict(batch_sampler=[[0]])]


@pytest.mark.parametrize("kw", MAP_ERRORS + ITERABLE_ERRORS, ids=repr)
def test_invalid_arguments_raise_value_error_like_torch(kw):
    torch = _torch()
    iterable = kw in ITERABLE_ERRORS
    with pytest.raises(ValueError):
        torch.utils.data.DataLoader(_torch_stream_class()() if iterable else Samples(4), **kw)
    with pytest.raises(ValueError):
        DataLoader(Stream() if iterable else Samples(4), **kw)


# --- batch layouts the workers reuse, collate's dtypes (found in review) -------------------
class ReorderedDicts(Dataset):
    """Same arrays under the same keys, the keys in another order from sample 2 on."""

    def __len__(self):
        return 6

    def __getitem__(self, i):
        a, b = np.full(2, i), np.full(2, 100 + i)
        return {"a": a, "b": b} if i < 2 else {"b": b, "a": a}


class Tagged:
    """A value a collate_fn makes, whose repr does not show its contents."""

    def __init__(self, values):
        self.values = values

    def __repr__(self):
        return f"Tagged(len={len(self.values)})"

    def __eq__(self, other):
        return type(other) is Tagged and other.values == self.values


def tagged_collate(samples):
    return np.stack(samples), Tagged([int(s[0]) for s in samples]), \
        np.array([f"s{int(s[0])}" for s in samples], dtype=object)


class BrokenStream(IterableDataset):
    def __iter__(self):
        raise ValueError("no stream today")


@pytest.mark.parametrize("num_workers", [0, 1, 2])
def test_dict_batches_keep_their_keys_when_the_order_changes(num_workers):
    got = pf_batches(ReorderedDicts(), batch_size=2, num_workers=num_workers)
    assert [list(b) for b in got] == [["a", "b"], ["b", "a"], ["b", "a"]]
    for k, b in enumerate(got):
        assert_same(b["a"], np.repeat(np.arange(2 * k, 2 * k + 2)[:, None], 2, axis=1))
        assert_same(b["b"], 100 + b["a"])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_collate_fn_values_and_object_arrays_arrive_with_every_batch(num_workers):
    ds = TensorDataset(pf.tensor(np.arange(8, dtype=np.int64).reshape(8, 1)))
    got = list(loader(ds, batch_size=2, num_workers=num_workers,
                      collate_fn=lambda s: tagged_collate([t.numpy() for (t,) in s])))
    for k, (rows, tag, names) in enumerate(got):
        rows = rows.numpy() if isinstance(rows, pf.Tensor) else rows  # (arrays cross as Tensors)
        assert rows[:, 0].tolist() == [2 * k, 2 * k + 1]
        assert tag == Tagged([2 * k, 2 * k + 1])
        assert list(names) == [f"s{2 * k}", f"s{2 * k + 1}"]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_an_iterable_dataset_whose_iter_raises_raises_in_the_loop(num_workers):
    with pytest.raises(ValueError, match="no stream today"):
        list(loader(BrokenStream(), batch_size=2, num_workers=num_workers))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_batch_sampler_of_numpy_arrays(num_workers):
    ds = TensorDataset(pf.tensor(np.arange(10) * 3))
    got = pf_batches(ds, batch_sampler=[np.array([4, 1]), np.array([], np.int64),
                                        np.arange(3)], num_workers=num_workers)
    assert [b[0].tolist() for b in got] == [[12, 3], [], [0, 3, 6]]


def test_default_collate_infers_number_dtypes_as_torch():
    torch = _torch()
    from pipeflow.data import default_collate
    for batch in ([1, 2.5], [True, 2], [True, False], [2.5, 1], [3, 4],
                  [np.float32(1.5), np.float32(2)]):
        assert_same(pf_np(default_collate(batch)), torch_np(
            torch.utils.data.default_collate(batch)), repr(batch))
    for batch in ([np.str_("a"), np.str_("bc")], [np.bytes_(b"x"), np.bytes_(b"yz")]):
        assert default_collate(batch) == batch
        assert torch.utils.data.default_collate(batch) == batch


class MixedDtypes(Dataset):
    """Samples whose arrays and NumPy scalars change dtype from one sample to the next."""

    def __len__(self):
        return 6

    def __getitem__(self, i):
        return (np.full(2, i, np.float32 if i % 2 else np.float64),
                np.full(2, i, np.int64 if i % 3 else np.float32),
                np.float32(i) if i % 2 else np.float64(i), np.uint8(i) if i % 2 else np.int8(-i))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_samples_of_mixed_dtypes_stack_as_torch_promotes(num_workers):
    """torch.stack promotes (float32 with float64 gives float64, int64 with float32 gives
    float32): no sample is cast down or refused."""
    for batch_size in (2, 3, 6):
        assert_same(pf_batches(MixedDtypes(), batch_size=batch_size, num_workers=num_workers),
                    torch_batches(MixedDtypes(), batch_size=batch_size), f"batch {batch_size}")


class DefaultDicts(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        sample = collections.defaultdict(list)
        sample["x"], sample["label"] = np.full(2, i), i
        return sample


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_mutable_mapping_keeps_its_type_and_attributes(num_workers):
    """torch collates a MutableMapping into a copy of the first sample's (a defaultdict
    keeps its factory) and updates it."""
    got = list(loader(DefaultDicts(), batch_size=2, num_workers=num_workers))
    want = list(_torch().utils.data.DataLoader(DefaultDicts(), batch_size=2))
    for g, w in zip(got, want):
        assert type(g) is type(w) is collections.defaultdict
        assert g.default_factory is w.default_factory is list
        assert_same(pf_np(dict(g)), torch_np(dict(w)))
    assert len(got) == len(want) == 2


class PipeflowRandom(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return pf.rand(2)


def test_workers_reseed_pipeflows_own_random_stream():
    """torch reseeds torch's stream in every worker: torch.rand in __getitem__ differs
    between workers and between epochs. So must pf.rand."""
    pf_loader = loader(PipeflowRandom(), batch_size=1, num_workers=2, seed=0)
    epochs = [[tuple(b.numpy().ravel()) for b in pf_loader] for _ in range(2)]
    assert len(set(epochs[0] + epochs[1])) == 8, epochs


class Keyed(Dataset):
    def __len__(self):
        return 3

    def __getitem__(self, i):
        return collections.OrderedDict(x=np.full(2, i), label=i)


def keep_raw(sample):
    return ("raw", sample)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batch_size_none_calls_collate_fn_on_each_sample(num_workers):
    """torch, without automatic batching, calls collate_fn(sample), not on a list of one,
    and default_convert keeps a mapping's type."""
    got = list(loader(Keyed(), batch_size=None, collate_fn=keep_raw, num_workers=num_workers))
    want = list(_torch().utils.data.DataLoader(Keyed(), batch_size=None, collate_fn=keep_raw))
    for g, w in zip(got, want):
        assert g[0] == "raw" and type(g[1]) is type(w[1]) is collections.OrderedDict
        assert_same(dict(g[1]), dict(w[1]))  # NumPy arrays as collate_fn returned them
    converted = list(loader(Keyed(), batch_size=None, num_workers=num_workers))
    assert [type(b) for b in converted] == [collections.OrderedDict] * 3
    assert_same([pf_np(dict(b)) for b in converted], [torch_np(dict(b)) for b in
                _torch().utils.data.DataLoader(Keyed(), batch_size=None)])


def sorting_collate(samples):
    """What packing collate_fns do: sort the list in place, then stack."""
    assert type(samples) is list and all(type(s) is tuple for s in samples), type(samples)
    samples.sort(key=lambda s: -int(s[0]))
    return np.stack([s[0].numpy() for s in samples])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_custom_collate_fn_gets_a_list_of_samples_from_a_tensor_dataset(num_workers):
    ds = TensorDataset(pf.tensor(np.arange(8)))
    for source in (ds, Subset(ds, [7, 1, 5, 3])):
        batches = list(loader(source, batch_size=2, num_workers=num_workers,
                              collate_fn=sorting_collate))
        assert {type(b) for b in batches} == {np.ndarray}  # as the collate_fn made them
        got = [b.tolist() for b in batches]
        assert got == ([[1, 0], [3, 2], [5, 4], [7, 6]] if source is ds else [[7, 1], [5, 3]])


class SlowAugmented(Augmented):
    def __getitem__(self, i):
        time.sleep(0.001)  # (I/O: the GIL goes to the other thread mid-sample)
        return super().__getitem__(i)


def test_loaders_in_two_threads_keep_their_own_sample_streams():
    def run(seed):
        return [pf_np(b) for b in loader(SlowAugmented(20), batch_size=1, seed=seed)]

    want = {seed: run(seed) for seed in (1, 2)}
    got = {}
    threads = [threading.Thread(target=lambda s=s: got.__setitem__(s, run(s))) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seed in (1, 2):
        assert_same(got[seed], want[seed], f"seed {seed}")


def test_a_negative_seed_drives_the_sample_streams():
    batches = [[pf_np(b) for b in loader(Augmented(6), batch_size=2, seed=-1)] for _ in "ab"]
    assert_same(batches[0], [pf_np(b) for b in loader(Augmented(6), batch_size=2, seed=-1)])
    with pytest.raises(AssertionError):
        assert_same(batches[0], [pf_np(b) for b in loader(Augmented(6), batch_size=2, seed=1)])


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_an_iterable_dataset_refuses_a_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match="batch_size should be a positive integer"):
        loader(Stream("interleave", 20), batch_size=batch_size)


class ByKey(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, key):
        return repr(key)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_sampler_keys_reach_the_dataset_as_they_are(num_workers):
    """torch hands each key a sampler yields to dataset[key]: strings, tuples, floats, and
    strings that look like numbers are not converted."""
    for keys in (["a", "b", "c"], [(1, 2), (3, 4), (5, 6, 7)], ["1", "2"], [0.5, 1.7],
                 [True, False]):
        got = pf_batches(ByKey(), batch_size=2, sampler=keys, num_workers=num_workers)
        assert got == torch_batches(ByKey(), batch_size=2, sampler=keys), keys
    subset_keys = ["x", "y", "z"]
    got = pf_batches(ByKey(), batch_size=3, sampler=SubsetRandomSampler(subset_keys, seed=1),
                     num_workers=num_workers)
    assert sorted(got[0]) == sorted(map(repr, subset_keys))


@pytest.mark.parametrize("make", ["subset", "weighted", "random"])
def test_state_dict_keeps_the_seed_of_a_users_unseeded_sampler(make):
    """A sampler made without seed= draws one: a loader resumed in a new process must
    follow the old sampler's seed, or the 'remaining' batches repeat and skip samples."""
    def build():
        ds = Augmented(20)
        sampler = {"subset": lambda: SubsetRandomSampler(range(20)),
                   "weighted": lambda: WeightedRandomSampler([1.0] * 20, 20, replacement=False),
                   "random": lambda: RandomSampler(ds)}[make]()
        return loader(ds, batch_size=4, sampler=sampler, seed=7)

    first = build()
    it = iter(first)
    seen = [pf_np(next(it)) for _ in range(2)]
    state = pickle.loads(pickle.dumps(first.state_dict()))
    rest = [pf_np(b) for b in it]
    resumed = build()
    resumed.load_state_dict(state)
    assert_same([pf_np(b) for b in resumed], rest)
    assert sorted(int(i) for _, lab in seen + rest for i in lab) == list(range(20))


@pytest.mark.parametrize("batch_size", [1, 4])
def test_a_subset_of_a_dataset_without_getitems_gives_each_sample_its_stream(batch_size):
    """random_split's parts (Subsets) of a plain dataset: a sample's augmentation must not
    depend on the batch size or on its place in the batch."""
    ds = Augmented(8)
    want = [pf_np(b) for b in loader(Subset(ds, range(8)), batch_size=1, seed=5)]
    got = [pf_np(b) for b in loader(Subset(ds, range(8)), batch_size=batch_size, seed=5)]
    assert_same(np.concatenate([x for x, _ in got]), np.concatenate([x for x, _ in want]))
    assert not hasattr(Subset(ds, [0]), "__getitems__")
    tensors = TensorDataset(pf.tensor(np.arange(6)))
    assert Subset(tensors, [5, 0]).__getitems__([1, 0])[1][0].item() == 5  # still batched


class RandomStream(IterableDataset):
    def __iter__(self):
        info = get_worker_info()
        for _ in range(4):
            yield np.array([info.id if info else 0, sample_generator().random()])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_an_iterable_datasets_draws_are_seeded_and_differ_between_workers(num_workers):
    runs = [[pf_np(b) for b in loader(RandomStream(), batch_size=2, num_workers=num_workers,
                                      seed=3)] for _ in range(2)]
    assert_same(runs[0], runs[1])  # a function of the seed
    draws = np.concatenate(runs[0])[:, 1]
    assert len(set(draws.tolist())) == len(draws), "workers or batches drew the same numbers"
    other = [pf_np(b) for b in loader(RandomStream(), batch_size=2, num_workers=num_workers,
                                      seed=4)]
    assert not np.array_equal(np.concatenate(other)[:, 1], draws)


def test_the_loop_body_does_not_run_in_a_samples_random_stream():
    seen = []
    for _ in loader(Samples(8), batch_size=4, num_workers=0, seed=3):
        seen.append(pf.data.worker.sample_context.key)
        seen.append(float(sample_generator().random()))
    assert seen[0] is None and seen[2] is None and seen[1] != seen[3]


def test_an_iterator_replaced_by_a_newer_one_says_so():
    pf_loader = loader(Samples(40), batch_size=4, num_workers=2, persistent_workers=True)
    old = iter(pf_loader)
    next(old)
    new = iter(pf_loader)  # the old one's epoch is unfinished: its workers are replaced
    with pytest.raises(RuntimeError, match="newer iterator"):
        for _ in old:
            pass
    assert len(list(new)) == 10


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_samplers_epoch_set_by_the_user_is_followed(num_workers):
    """torch's idiom (resuming at epoch 5: sampler.set_epoch(5)) sets the order; without it
    the loader counts its own epochs on."""
    ds = TensorDataset(pf.tensor(np.arange(16)))

    def order_of(epoch):
        reference = RandomSampler(ds, seed=3)
        reference.set_epoch(epoch)
        return list(reference)

    sampler = RandomSampler(ds, seed=3)
    pf_loader = loader(ds, sampler=sampler, batch_size=4, num_workers=num_workers)
    sampler.set_epoch(5)
    assert [i for (b,) in pf_loader for i in b.tolist()] == order_of(5)
    assert pf_loader.state_dict()["epoch"] == 6
    assert [i for (b,) in pf_loader for i in b.tolist()] == order_of(6)
    sampler.set_epoch(2)
    assert [i for (b,) in pf_loader for i in b.tolist()] == order_of(2)


# --- samplers that never end, or whose length is wrong -------------------------------------
class Endless(pf.data.Sampler):
    """torch's idiom for step-based training: a sampler with no length that never ends
    (seeded by (seed, epoch), so every pass is reproducible)."""

    def __init__(self, n, seed=5):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        while True:
            yield int(rng.integers(self.n))


def endless_draws(n, epoch, count):
    return list(itertools.islice(iter(_with_epoch(Endless(n), epoch)), count))


def _with_epoch(sampler, epoch):
    sampler.set_epoch(epoch)
    return sampler


@pytest.mark.parametrize("num_workers,persistent", [(0, False), (2, False), (2, True)])
def test_an_endless_sampler_streams_batches_to_the_workers(num_workers, persistent):
    """The epoch's order can't be drawn up front: it is dealt to the workers as batches are
    used, over many deals (100 batches of 4), with the same augmentations as in the main
    process. A loop that stops ends the epoch; the next iterator runs the next one."""
    def make(**kw):
        return loader(Augmented(50), batch_size=4, sampler=Endless(50), seed=2, **kw)

    reference = make()
    want = [[pf_np(b) for b in itertools.islice(reference, 100)] for _ in range(2)]
    for epoch in (0, 1):
        assert [int(i) for _, lab in want[epoch] for i in lab] == endless_draws(50, epoch, 400)
    pf_loader = make(num_workers=num_workers, persistent_workers=persistent)
    with pytest.raises(TypeError):
        len(pf_loader)
    assert_same([pf_np(b) for b in itertools.islice(pf_loader, 100)], want[0], "epoch 0")
    assert pf_loader.state_dict()["batches_served"] == 100
    assert_same([pf_np(b) for b in itertools.islice(pf_loader, 100)], want[1], "epoch 1")

    # resumed in a new loader: the rest of the epoch, exactly
    first = make(num_workers=num_workers)
    it = iter(first)
    for _ in range(30):
        next(it)
    resumed = make(num_workers=num_workers)
    resumed.load_state_dict(first.state_dict())
    del it, first
    assert_same([pf_np(b) for b in itertools.islice(resumed, 50)], want[0][30:80], "resumed")


class Misreported:
    """A batch sampler whose __len__ is wrong: torch reads it to its end whatever its
    length says, and so must a loader that deals whole epochs by their length."""

    def __init__(self, batches, claimed):
        self.batches, self.claimed = batches, claimed

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return self.claimed


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("claimed", [3, 40])
def test_a_batch_sampler_is_read_to_its_end_whatever_its_length_says(num_workers, claimed):
    batches = [[i, i + 1] for i in range(0, 20, 2)]
    pf_loader = loader(Samples(20), batch_sampler=Misreported(batches, claimed),
                       num_workers=num_workers)
    for _ in range(2):
        assert [b[1].tolist() for b in pf_loader] == batches


@pytest.mark.parametrize("num_workers", [0, 2])
def test_the_endless_random_sampler_idiom(num_workers):
    """RandomSampler(replacement=True, num_samples=huge): torch draws it as it goes; drawing
    the epoch up front would take terabytes."""
    ds = Samples(20)
    sampler = RandomSampler(ds, replacement=True, num_samples=10 ** 12, seed=4)
    pf_loader = loader(ds, sampler=sampler, batch_size=5, num_workers=num_workers)
    assert len(pf_loader) == 2 * 10 ** 11
    got = [b[1].tolist() for b in itertools.islice(pf_loader, 60)]
    assert [i for b in got for i in b] == list(itertools.islice(iter(sampler), 300))


def test_an_iterator_dropped_before_its_first_batch_leaves_persistent_workers_free():
    pf_loader = loader(Pids(8), batch_size=2, num_workers=2, persistent_workers=True)
    pids = {int(p) for b in pf_loader for p in b[1]}
    it = iter(pf_loader)
    del it
    again = list(pf_loader)
    assert [b[0].tolist() for b in again] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert {int(p) for b in again for p in b[1]} == pids, "the workers were replaced"


class Unsized(pf.data.Sampler):
    """A sampler whose length can't be had: __len__ raises `error` (TypeError as torch's
    IterDataPipe samplers, NotImplementedError as an abstract base class)."""

    def __init__(self, indices, error):
        self.indices, self.error = indices, error

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        raise self.error("no length")


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("error", [TypeError, NotImplementedError])
def test_samplers_whose_len_raises_are_read_as_torch_reads_them(num_workers, error):
    batches = [[i, i + 1, i + 2] for i in range(0, 9, 3)] + [[9]]
    for kw in ({"sampler": Unsized(range(10), error), "batch_size": 3},
               {"batch_sampler": Unsized(batches, error)}):
        pf_loader = loader(Samples(10), num_workers=num_workers, **kw)
        assert [b[1].tolist() for b in pf_loader] == batches, kw


class EndlessWithLength(Endless):
    """mmengine's InfiniteSampler: endless, yet its length is the dataset's (for schedules)."""

    def __len__(self):
        return self.n


@pytest.mark.parametrize("num_workers", [0, 2])
def test_an_endless_sampler_that_reports_a_length_streams(num_workers):
    pf_loader = loader(Samples(40), sampler=EndlessWithLength(40), batch_size=4,
                       num_workers=num_workers)
    assert len(pf_loader) == 10
    got = [i for b in itertools.islice(pf_loader, 30) for i in b[1].tolist()]
    assert got == endless_draws(40, 0, 120)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_two_iterators_of_an_endless_random_sampler_keep_their_epochs(num_workers):
    """The order is fixed when the iterator is made, not when it is first read: with two
    iterators alive (epochs 0 and 1) each has its own, whatever num_workers is; and a
    num_samples past sys.maxsize (len() overflows) streams too."""
    ds = Samples(200)
    for num_samples in (2 ** 24 + 1, 10 ** 20):
        sampler = RandomSampler(ds, replacement=True, num_samples=num_samples, seed=4)
        pf_loader = loader(ds, sampler=sampler, batch_size=4, num_workers=num_workers)
        first, second = iter(pf_loader), iter(pf_loader)
        got = [[b[1].tolist() for b in itertools.islice(it, 2)] for it in (first, second)]
        want = []
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            draws = list(itertools.islice(iter(sampler), 8))
            want.append([draws[:4], draws[4:]])
        assert got == want and want[0] != want[1]
        del first, second


class Evens(SequentialSampler):
    """A subclass that iterates its own way: its __iter__, not the parent's order, counts."""

    def __iter__(self):
        return iter(range(0, len(self.data_source), 2))

    def __len__(self):
        return (len(self.data_source) + 1) // 2


class Bare(pf.data.Sampler):
    def __len__(self):
        return 3


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_sampler_subclass_is_read_through_its_own_iter(num_workers):
    pf_loader = loader(Samples(10), sampler=Evens(range(10)), batch_size=2,
                       num_workers=num_workers)
    assert [b[1].tolist() for b in pf_loader] == [[0, 2], [4, 6], [8]]
    with pytest.raises(NotImplementedError, match="Bare defines neither __iter__"):
        list(loader(Samples(10), sampler=Bare(), batch_size=2, num_workers=num_workers))


def test_a_closed_iterator_does_not_count_its_epoch_as_finished():
    pf_loader = loader(Samples(40), batch_size=4, num_workers=2)
    it = iter(pf_loader)
    for _ in range(3):
        next(it)
    it.close()
    with pytest.raises(StopIteration):
        next(it)
    assert pf_loader.state_dict()["epoch"] == 0 and pf_loader.state_dict()["batches_served"] == 3


def test_an_iterator_replaced_while_a_deal_is_due_says_so():
    pf_loader = loader(Samples(40), sampler=Endless(40), batch_size=4, num_workers=2,
                       persistent_workers=True)
    old = iter(pf_loader)
    next(old)
    new = iter(pf_loader)
    with pytest.raises(RuntimeError, match="newer iterator"):
        for _ in old:  # its next deal goes to workers that were stopped
            pass
    assert len(list(itertools.islice(new, 50))) == 50


class BigBatches:
    """A batch sampler of 100 batches of 400,000 indices: 40 million in all."""

    def __iter__(self):
        return (range(k * 400_000, (k + 1) * 400_000) for k in range(100))

    def __len__(self):
        return 100


def test_a_long_epoch_of_a_batch_sampler_is_dealt_as_it_is_used():
    """Known length, but far more indices than go whole in one message: the first deal is
    a chunk (here a single batch, larger than a chunk by itself), not 40 million indices."""
    from pipeflow.data.loader import _Dealer
    pf_loader = loader(Samples(10), batch_sampler=BigBatches(), num_workers=2)
    dealer = _Dealer(pf_loader, 0)
    shares = dealer.first_deal()
    assert [[batch_id for batch_id, _ in share[1]] for share in shares] == [[0], []]
    assert all(share[2] for share in shares) and dealer.end == 1


class FailsAt20:
    """A batch sampler that raises at its 20th batch."""

    def __len__(self):
        return 40

    def __iter__(self):
        for k in range(40):
            if k == 20:
                raise ValueError("sampler failed at batch 20")
            yield [2 * k, 2 * k + 1]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_batch_sampler_error_comes_at_its_batch(num_workers):
    pf_loader = loader(Samples(80), batch_sampler=FailsAt20(), num_workers=num_workers)
    served = []
    with pytest.raises(ValueError, match="sampler failed at batch 20"):
        for batch in pf_loader:
            served.append(batch[1].tolist())
    assert served == [[2 * k, 2 * k + 1] for k in range(20)]


class FailsAt9(Dataset):
    def __len__(self):
        return 32

    def __getitem__(self, i):
        if i == 9:
            raise ValueError("bad sample 9")
        return np.full(4, i, np.int64)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_an_error_leaves_the_epoch_unfinished(num_workers):
    """After a sample's error the iterator ends, but the epoch does not count as done:
    its state resumes at the failed batch."""
    pf_loader = loader(FailsAt9(), batch_size=4, num_workers=num_workers)
    it = iter(pf_loader)
    assert [next(it)[0, 0].item() for _ in range(2)] == [0, 4]
    with pytest.raises(ValueError, match="bad sample 9"):
        next(it)
    with pytest.raises(StopIteration):
        next(it)
    assert pf_loader.state_dict()["epoch"] == 0
    assert pf_loader.state_dict()["batches_served"] == 2


def test_a_sampler_subclass_may_pass_its_data_source_up():
    class Reversed(pf.data.Sampler):
        def __init__(self, data_source):
            super().__init__(data_source)
            self.n = len(data_source)

        def __iter__(self):
            return iter(range(self.n - 1, -1, -1))

        def __len__(self):
            return self.n

    assert [b[1].tolist() for b in loader(Samples(5), sampler=Reversed(range(5)),
                                          batch_size=2)] == [[4, 3], [2, 1], [0]]
