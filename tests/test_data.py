"""The single-process data path: datasets, samplers, collation, DataLoader."""
import collections
import itertools

import numpy as np
import pytest

import pipeflow as pf
from pipeflow.data import (BatchSampler, ConcatDataset, DataLoader, RandomSampler,
                           SequentialSampler, Subset, TensorDataset, default_collate,
                           random_split)


def dataset(n=10):
    return TensorDataset(pf.arange(n).float().reshape(n, 1) * 10, pf.arange(n))


def test_tensor_dataset_items_and_batched_fetch():
    ds = dataset()
    x, y = ds[3]
    assert x.tolist() == [30.0] and y.item() == 3
    batch = ds.__getitems__([4, 1])
    assert [(a.tolist(), b.item()) for a, b in batch] == [([40.0], 4), ([10.0], 1)]
    with pytest.raises(ValueError, match="Size mismatch"):
        TensorDataset(pf.zeros(3), pf.zeros(4))


def test_subset_concat_and_random_split():
    ds = dataset()
    sub = Subset(ds, [7, 2])
    assert len(sub) == 2 and sub[0][1].item() == 7
    both = ConcatDataset([ds, sub])
    assert len(both) == 12 and both[11][1].item() == 2 and both[-1][1].item() == 2
    parts = random_split(ds, [6, 4], seed=3)
    seen = sorted(i for p in parts for i in p.indices)
    assert [len(p) for p in parts] == [6, 4] and seen == list(range(10))
    assert [p.indices for p in random_split(ds, [0.7, 0.3], seed=3)] == \
        [p.indices for p in random_split(ds, [0.7, 0.3], seed=3)]
    with pytest.raises(ValueError, match="does not equal the length"):
        random_split(ds, [3, 3])


def test_random_sampler_is_a_function_of_seed_and_epoch():
    ds = dataset(50)
    a, b = RandomSampler(ds, seed=7), RandomSampler(ds, seed=7)
    assert list(a) == list(b) and sorted(a) == list(range(50))
    b.set_epoch(1)
    assert list(a) != list(b)
    a.set_epoch(1)
    assert list(a) == list(b)
    assert len(list(RandomSampler(ds, replacement=True, num_samples=80, seed=1))) == 80


def test_random_sampler_of_an_empty_dataset_is_empty():
    sampler = RandomSampler(dataset(0), num_samples=5, seed=1)
    assert list(sampler) == [] and list(BatchSampler(sampler, 2, False)) == []


def test_random_sampler_without_replacement_repeats_whole_permutations():
    ds = dataset(10)
    order = list(RandomSampler(ds, num_samples=25, seed=3))
    assert [sorted(order[k:k + 10]) for k in (0, 10)] == [list(range(10))] * 2
    assert len(set(order[20:])) == 5 and order[:10] != order[10:20]


@pytest.mark.parametrize("replacement", [True, False])
def test_random_sampler_with_a_huge_num_samples_draws_as_it_is_read(replacement):
    """num_samples=10**12 (torch's "endless" idiom) is drawn in pieces as the sampler is
    read, and in batches by BatchSampler, instead of eight terabytes up front."""
    from pipeflow.data.sampler import DRAW_WHOLE_UP_TO
    ds = dataset(10)
    sampler = RandomSampler(ds, replacement=replacement, num_samples=10 ** 12, seed=3)
    head = list(itertools.islice(iter(sampler), 3 * 2 ** 16 + 5))  # over several pieces
    assert len(head) == 3 * 2 ** 16 + 5 and set(head) == set(range(10))
    assert all(type(i) is int for i in head[:100])
    assert head == list(itertools.islice(iter(sampler), len(head)))  # seeded
    if not replacement:
        assert all(sorted(head[k:k + 10]) == list(range(10)) for k in range(0, 1000, 10))
    batches = BatchSampler(sampler, 7, drop_last=False)
    assert len(batches) == -(-10 ** 12 // 7)
    got = list(itertools.islice(iter(batches), 5))
    assert got == [head[k:k + 7] for k in range(0, 35, 7)]
    # up to the limit, the epoch is drawn at once, and reading it gives the same order
    small = RandomSampler(ds, replacement=replacement, num_samples=DRAW_WHOLE_UP_TO // 2 ** 10,
                          seed=3)
    assert list(small) == small.order().tolist()


def test_batch_sampler_drop_last():
    sampler = SequentialSampler(range(10))
    assert list(BatchSampler(sampler, 4, False)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(BatchSampler(sampler, 4, True)) == 2
    with pytest.raises(ValueError, match="batch_size"):
        BatchSampler(sampler, 0, False)


def test_default_collate_keeps_structure():
    Point = collections.namedtuple("Point", "x y")
    samples = [{"image": np.full((2, 2), i, np.uint8), "label": i, "name": f"s{i}",
                "pair": (float(i), Point(i, -i))} for i in range(3)]
    batch = default_collate(samples)
    assert batch["image"].shape == (3, 2, 2) and batch["image"].dtype == pf.uint8
    assert batch["label"].tolist() == [0, 1, 2] and batch["label"].dtype == pf.int64
    assert batch["name"] == ["s0", "s1", "s2"]
    assert batch["pair"][0].dtype == pf.float64
    assert isinstance(batch["pair"][1], Point) and batch["pair"][1].y.tolist() == [0, -1, -2]
    tensors = default_collate([pf.ones(2), pf.zeros(2)])
    assert tensors.tolist() == [[1.0, 1.0], [0.0, 0.0]]


def test_loader_batches_shuffles_reproducibly_and_counts():
    ds = dataset(10)
    plain = DataLoader(ds, batch_size=4)
    assert len(plain) == 3
    assert [y.tolist() for _, y in plain] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    a = DataLoader(ds, batch_size=4, shuffle=True, seed=5, drop_last=True)
    b = DataLoader(ds, batch_size=4, shuffle=True, seed=5, drop_last=True)
    epoch1 = [y.tolist() for _, y in a]
    assert epoch1 == [y.tolist() for _, y in b] and len(epoch1) == 2
    assert [y.tolist() for _, y in a] != epoch1  # the next epoch has its own order


def test_loader_rejects_contradictory_arguments():
    ds = dataset()
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(ds, sampler=SequentialSampler(ds), shuffle=True)
    with pytest.raises(ValueError, match="num_workers"):
        DataLoader(ds, num_workers=-1)
    with pytest.raises(ValueError, match="prefetch_factor"):
        DataLoader(ds, prefetch_factor=2)


def test_concat_dataset_hands_its_parts_python_int_indices():
    """torch: a part's __getitem__ gets an int (code that checks isinstance(i, int))."""
    class Strict(pf.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            assert type(i) is int, type(i)
            return i

    both = ConcatDataset([Strict(), Strict()])
    assert [both[i] for i in range(6)] == [0, 1, 2, 0, 1, 2] and both[-2] == 1
    assert all(type(size) is int for size in both.cumulative_sizes)


def test_random_split_follows_the_global_seed_and_torchs_fractions():
    ds = dataset()
    splits = []
    for seed in (1, 1, 2):
        pf.manual_seed(seed)
        splits.append(random_split(ds, [5, 5])[0].indices)
    assert splits[0] == splits[1] != splits[2]
    torch = pytest.importorskip("torch")
    for n, fractions in ((1, [0.5, 0.5]), (10, [0.33, 0.33, 0.34]), (7, [1.0]), (5, [0.2] * 5)):
        want = [len(p) for p in torch.utils.data.random_split(range(n), fractions)]
        assert [len(p) for p in random_split(range(n), fractions)] == want, (n, fractions)
    with pytest.raises(ValueError, match="between 0 and 1"):
        random_split(ds, [1.5, -0.5])
