"""SubsetRandomSampler, WeightedRandomSampler and DistributedSampler: torch.utils.data's
semantics, with every random order a pure function of (seed, epoch)."""
import numpy as np
import pytest

from pipeflow.data.sampler import (BatchSampler, DistributedSampler, RandomSampler,
                                   SequentialSampler, SubsetRandomSampler, WeightedRandomSampler)

# (dataset length, num_replicas) pairs: divisible, not divisible, fewer samples than replicas,
# padding longer than the dataset, one replica, empty dataset
CASES = [(10, 2), (10, 3), (11, 4), (3, 4), (2, 7), (1, 1), (7, 1), (100, 8), (0, 3)]


def shares(n, replicas, **kw):
    return [list(DistributedSampler(range(n), replicas, r, **kw)) for r in range(replicas)]


# ------------------------------------------------------------------ DistributedSampler

@pytest.mark.parametrize("n,replicas", CASES)
@pytest.mark.parametrize("shuffle", [False, True])
def test_distributed_drop_last_shares_are_disjoint_and_equal(n, replicas, shuffle):
    parts = shares(n, replicas, shuffle=shuffle, seed=3, drop_last=True)
    flat = [i for p in parts for i in p]
    assert len(flat) == len(set(flat)), "ranks overlap"
    assert {len(p) for p in parts} == {n // replicas}
    assert set(flat) <= set(range(n))
    for r, p in enumerate(parts):
        assert len(DistributedSampler(range(n), replicas, r, drop_last=True)) == len(p)


@pytest.mark.parametrize("n,replicas", CASES)
@pytest.mark.parametrize("shuffle", [False, True])
def test_distributed_padded_shares_cover_the_dataset(n, replicas, shuffle):
    parts = shares(n, replicas, shuffle=shuffle, seed=3, drop_last=False)
    flat = [i for p in parts for i in p]
    assert set(flat) == set(range(n))
    assert {len(p) for p in parts} == {-(-n // replicas)}
    total = len(flat)
    assert total == -(-n // replicas) * replicas and total - n < replicas or n < replicas
    # torch's layout: the order, padded by repeating it from its start, dealt out round-robin
    order = list(DistributedSampler(range(n), 1, 0, shuffle=shuffle, seed=3))
    padded = (order * (total // max(n, 1) + 1))[:total]
    dealt = [None] * total
    for r, p in enumerate(parts):
        dealt[r::replicas] = p
    assert dealt == padded


def test_distributed_len_matches_torch():
    torch_data = pytest.importorskip("torch.utils.data")
    for n, replicas in CASES + [(17, 5), (5, 5), (6, 4), (1000, 7)]:
        for drop_last in (False, True):
            for rank in {0, replicas - 1}:
                ours = DistributedSampler(range(n), replicas, rank, drop_last=drop_last)
                ref = torch_data.DistributedSampler(range(n), replicas, rank, drop_last=drop_last)
                case = (n, replicas, rank, drop_last)
                assert len(ours) == len(ref) == ours.num_samples == ref.num_samples, case
                assert ours.total_size == ref.total_size, case
                assert len(list(ours)) == len(ours), case


def test_distributed_unshuffled_matches_torch_exactly():
    torch_data = pytest.importorskip("torch.utils.data")
    for n, replicas in CASES + [(17, 5), (6, 4), (2, 9)]:
        for drop_last in (False, True):
            for rank in range(replicas):
                ours = DistributedSampler(range(n), replicas, rank, shuffle=False,
                                          drop_last=drop_last)
                ref = torch_data.DistributedSampler(range(n), replicas, rank, shuffle=False,
                                                    drop_last=drop_last)
                assert list(ours) == list(ref), (n, replicas, rank, drop_last)


def test_distributed_shuffle_is_a_function_of_seed_and_epoch():
    def order(rank=0, seed=0, epoch=0, replicas=1):
        s = DistributedSampler(range(50), replicas, rank, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert order() == order()                       # same (seed, epoch): same order
    assert order(epoch=1) == order(epoch=1)
    assert order(epoch=0) != order(epoch=1)         # a new order each epoch
    assert order(seed=1) != order(seed=0)
    assert order(seed=1, epoch=0) != order(seed=0, epoch=1)  # not just seed + epoch
    assert sorted(order(epoch=5)) == list(range(50))
    # the ranks of one (seed, epoch) partition one permutation
    parts = [order(rank=r, seed=4, epoch=2, replicas=5) for r in range(5)]
    assert sorted(i for p in parts for i in p) == list(range(50))
    s = DistributedSampler(range(50), 1, 0, seed=4)
    s.set_epoch(2)
    assert [i for r in range(10) for i in parts[r % 5][r // 5:r // 5 + 1]] == list(s)[:10]
    # set_epoch back to an earlier epoch replays it
    s = DistributedSampler(range(50), 2, 1, seed=9)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first
    s.set_epoch(0)
    assert list(s) == first


def test_distributed_arguments(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    s = DistributedSampler(range(5))
    assert (s.num_replicas, s.rank, s.shuffle, s.seed, s.drop_last) == (1, 0, True, 0, False)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    s = DistributedSampler(range(10), shuffle=False)
    assert (s.num_replicas, s.rank) == (4, 3)
    assert list(s) == [3, 7, 1]
    with pytest.raises(ValueError,
                       match=r"Invalid rank 4, rank should be in the interval \[0, 3\]"):
        DistributedSampler(range(10), rank=4)
    with pytest.raises(ValueError, match=r"Invalid rank -1, rank should be in the interval"):
        DistributedSampler(range(10), 2, -1)
    with pytest.raises(ValueError, match="num_replicas should be a positive integer"):
        DistributedSampler(range(10), 0, 0)


def test_distributed_with_batch_sampler():
    s = DistributedSampler(range(10), 3, 1, shuffle=False)
    b = BatchSampler(s, 2, drop_last=False)
    assert list(b) == [[1, 4], [7, 0]]
    assert len(b) == 2
    s = DistributedSampler(range(40), 2, 0, seed=1)
    b = BatchSampler(s, 5, drop_last=True)
    first = list(b)
    b.set_epoch(1)                                  # forwarded to the sampler
    assert s.epoch == 1 and list(b) != first
    assert sorted(i for batch in list(b) for i in batch) == sorted(s)


# ------------------------------------------------------------------ SubsetRandomSampler

def test_subset_random_sampler_permutes_its_indices():
    indices = [3, 10, 11, 40, 41, 42, 99]
    s = SubsetRandomSampler(indices, seed=0)
    assert len(s) == 7
    orders = []
    for epoch in range(4):
        s.set_epoch(epoch)
        order = list(s)
        assert sorted(order) == indices and order == list(s)
        orders.append(order)
    assert len({tuple(o) for o in orders}) > 1      # the order changes with the epoch
    assert list(SubsetRandomSampler(indices, seed=0)) == orders[0]
    assert sorted(SubsetRandomSampler(np.arange(20, 40), seed=2)) == list(range(20, 40))
    assert list(SubsetRandomSampler([], seed=0)) == [] and len(SubsetRandomSampler([])) == 0
    batches = list(BatchSampler(SubsetRandomSampler(indices, seed=5), 3, drop_last=False))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert sorted(i for b in batches for i in b) == indices


def test_subset_random_sampler_seed_from_generator():
    import pipeflow as pf
    a = SubsetRandomSampler(range(30), generator=pf.Generator().manual_seed(8))
    b = SubsetRandomSampler(range(30), seed=8)
    assert a.seed == 8 and list(a) == list(b)


# ------------------------------------------------------------------ WeightedRandomSampler

def chi_square(counts, weights):
    weights = np.asarray(weights, dtype=np.float64)
    expected = counts.sum() * weights / weights.sum()
    nz = expected > 0
    assert counts[~nz].sum() == 0, "drew an index of zero weight"
    return float((((counts - expected) ** 2)[nz] / expected[nz]).sum())


def test_weighted_with_replacement_frequencies():
    weights = [0.5, 2.0, 0.0, 1.0, 4.0, 2.5]
    s = WeightedRandomSampler(weights, 20000, seed=0)
    draws = list(s)
    assert len(draws) == len(s) == 20000 and all(isinstance(i, int) for i in draws)
    counts = np.bincount(draws, minlength=len(weights))
    # 4 degrees of freedom: P(chi2 > 40) < 1e-7
    assert chi_square(counts, weights) < 40
    assert draws == list(WeightedRandomSampler(weights, 20000, seed=0))   # deterministic
    s.set_epoch(1)
    assert list(s) != draws


def test_weighted_without_replacement():
    weights = [1.0, 0.0, 3.0, 6.0, 0.0]
    s = WeightedRandomSampler(weights, 3, replacement=False, seed=0)
    firsts = []
    for epoch in range(3000):
        s.set_epoch(epoch)
        draw = list(s)
        assert sorted(draw) == [0, 2, 3]            # no repeats, never a zero weight
        firsts.append(draw[0])
    # the first draw is proportional to the weights (2 degrees of freedom: P(chi2 > 30) < 1e-6)
    assert chi_square(np.bincount(firsts, minlength=5), weights) < 30
    # a second draw is proportional to what remains: after 3 (weight 6), 2 comes 3 times as
    # often as 0
    s = WeightedRandomSampler(weights, 2, replacement=False, seed=1)
    seconds = []
    for epoch in range(3000):
        s.set_epoch(epoch)
        first, second = list(s)
        if first == 3:
            seconds.append(second)
    frac = np.mean(np.asarray(seconds) == 2)
    assert abs(frac - 0.75) < 0.05, frac


def test_weighted_accepts_tensors_and_arrays():
    import pipeflow as pf
    a = WeightedRandomSampler(pf.tensor([1.0, 2.0, 3.0]), 50, seed=3)
    b = WeightedRandomSampler(np.array([1, 2, 3]), 50, seed=3)
    assert list(a) == list(b)
    assert a.weights.dtype == pf.float64 and a.weights.tolist() == [1.0, 2.0, 3.0]
    g = WeightedRandomSampler([1, 2, 3], 50, generator=pf.Generator().manual_seed(3))
    assert list(g) == list(a)
    assert len(list(BatchSampler(a, 16, drop_last=True))) == len(BatchSampler(a, 16, True)) == 3


def test_weighted_errors_match_torch():
    bad_num = "num_samples should be a positive integer value, but got num_samples="
    for num_samples in (0, -3, 2.0, True, None):
        with pytest.raises(ValueError, match=bad_num):
            WeightedRandomSampler([1, 2], num_samples)
    with pytest.raises(ValueError, match="replacement should be a boolean value, but got "
                                         "replacement=1"):
        WeightedRandomSampler([1, 2], 2, replacement=1)
    with pytest.raises(ValueError, match=r"weights should be a 1d sequence but given weights "
                                         r"have shape \(1, 2\)"):
        WeightedRandomSampler([[1, 2]], 2)
    cases = [  # (weights, num_samples, replacement, message)
        ([1, -1, 2], 3, True, r"invalid multinomial distribution \(encountering probability "
                              r"entry < 0\)"),
        ([1, float("nan")], 2, True, r"encountering probability entry < 0"),
        ([1, float("inf")], 2, True, r"encountering probability entry = infinity or NaN"),
        ([0, 0], 2, True, r"invalid multinomial distribution \(sum of probabilities <= 0\)"),
        ([], 2, True, r"sum of probabilities <= 0"),
        ([1, -1, 2], 2, False, r"probability tensor contains either `inf`, `nan` or element < 0"),
        ([1, float("inf")], 1, False, r"contains either `inf`, `nan` or element < 0"),
        ([0.0, 0.0], 1, False, r"sum of probabilities <= 0"),
        ([1, 2, 3], 4, False, r"cannot sample n_sample > prob_dist.size\(-1\) samples without "
                              r"replacement"),
        ([1, 0, 2], 3, False, r"invalid multinomial distribution \(with replacement=False, not "
                              r"enough non-negative category to sample\)"),
    ]
    for weights, num_samples, replacement, message in cases:
        with pytest.raises(RuntimeError, match=message):
            WeightedRandomSampler(weights, num_samples, replacement=replacement)
    # enough nonzero weights, or replacement: fine
    assert sorted(WeightedRandomSampler([1, 0, 2], 2, replacement=False, seed=0)) == [0, 2]
    assert set(WeightedRandomSampler([1, 0, 2], 9, seed=0)) <= {0, 2}


# ------------------------------------------------------------------ every sampler

def test_every_sampler_has_len_and_set_epoch():
    samplers = [SequentialSampler(range(9)), RandomSampler(range(9), seed=0),
                SubsetRandomSampler(range(9), seed=0), WeightedRandomSampler([1] * 9, 9, seed=0),
                DistributedSampler(range(9), 1, 0),
                BatchSampler(SequentialSampler(range(9)), 4, False)]
    for s in samplers:
        s.set_epoch(3)
        assert len(list(s)) == len(s), type(s).__name__
    assert list(BatchSampler([5, 6, 7], 2, False)) == [[5, 6], [7]]   # any iterable of indices
    BatchSampler([5, 6, 7], 2, False).set_epoch(1)


def test_negative_seed_and_epoch_are_accepted():
    s = DistributedSampler(range(10), 2, 0, seed=-5)
    s.set_epoch(-1)
    assert len(list(s)) == 5
    assert sorted(RandomSampler(range(6), seed=-1)) == list(range(6))
