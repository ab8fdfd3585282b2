"""Samplers: the order in which a loader visits a dataset. A shuffled order is a pure
function of (seed, epoch), so a run is reproducible and resumable."""
import itertools
import math
import os

import numpy as np


def _resolve_seed(generator, seed):
    """The seed a sampler shuffles with: ``seed``, else the generator's initial seed, else a
    fresh one drawn once (fixed for the sampler's life; ``set_epoch`` varies the order)."""
    if seed is None:
        seed = generator.initial_seed() if generator is not None else \
            int(np.random.SeedSequence().entropy % (2 ** 63))
    return int(seed)


def _epoch_rng(seed, epoch):
    """The NumPy stream for (seed, epoch); every rank and every rerun gets the same one."""
    seed, epoch = int(seed), int(epoch)
    # SeedSequence takes non-negative entropy only; torch's manual_seed takes negative seeds too
    return np.random.default_rng([seed % 2 ** 64 if seed < 0 else seed,
                                  epoch % 2 ** 64 if epoch < 0 else epoch])


DRAW_WHOLE_UP_TO = 2 ** 24
"""Indices of an epoch drawn at once (128 MiB as int64); a longer epoch, such as the "endless"
RandomSampler(replacement=True, num_samples=10**12) idiom, is drawn as it is read."""


def length(sized):
    """len(sized), or None where it has none to go by: no __len__, or one that raises (a
    sampler's NotImplementedError, say) or overflows."""
    try:
        return len(sized)
    except Exception:
        return None


def _is_positive_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) \
        and value > 0


def _keys(indices):
    """An epoch's indices as an array: int64 where all are integers (BatchSampler slices it
    with no Python loop per index), else the keys as given, in an object array (a dataset
    may be indexed by strings or tuples, as in torch: nothing is converted)."""
    keys = list(indices)
    try:
        ints = np.array(keys)
    except ValueError:  # ragged: tuples of different lengths
        ints = None
    if ints is not None and ints.ndim == 1 and ints.dtype.kind in "iu" or not keys:
        return np.asarray(keys, np.int64)
    return np.fromiter(keys, object, len(keys))


class Sampler:
    def __init__(self, data_source=None):
        """(torch's signature: subclasses may pass their data source up, unused here.)"""

    def __iter__(self):
        order = self.order()
        if order is None:
            raise NotImplementedError(f"{type(self).__name__} defines neither __iter__ nor "
                                      "order()")
        return iter(order.tolist())

    def order(self):
        """The epoch's indices as an array, for samplers that draw them all at once (and
        are read through it); None for those that define __iter__ instead."""
        return None

    def set_epoch(self, epoch):
        """Samplers whose order depends on the epoch override this."""


def _drawn_order(sampler):
    """The sampler's epoch as an array where iterating it reads just that (pipeflow's
    SequentialSampler and RandomSampler); None for other samplers, and for subclasses
    that iterate in their own way."""
    if not isinstance(sampler, Sampler) or type(sampler).__iter__ not in _ORDER_READERS:
        return None
    return sampler.order()


class SequentialSampler(Sampler):
    def __init__(self, data_source):
        self.data_source = data_source

    def order(self):
        return np.arange(len(self.data_source), dtype=np.int64)

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """A permutation (or draws with replacement) seeded by (seed, epoch)."""

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None,
                 seed=None):
        self.data_source, self.replacement = data_source, replacement
        self._num_samples = num_samples
        self.seed, self.epoch = _resolve_seed(generator, seed), 0
        if num_samples is not None and (not isinstance(num_samples, int) or num_samples <= 0):
            raise ValueError(f"num_samples should be a positive integer, but got {num_samples}")

    @property
    def num_samples(self):
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def set_epoch(self, epoch):
        self.epoch = epoch

    def order(self):
        pieces = list(self._draws())
        return np.concatenate(pieces) if pieces else np.zeros(0, np.int64)

    def __iter__(self):
        if self.num_samples <= DRAW_WHOLE_UP_TO:
            return super().__iter__()
        return (int(i) for draw in self._draws() for i in draw)

    def _draws(self):
        """The epoch's indices in pieces (of the epoch set now, not when first read)."""
        n = len(self.data_source)
        return _random_pieces(_epoch_rng(self.seed, self.epoch), n,
                              self.num_samples if n else 0, self.replacement)

    def __len__(self):
        return self.num_samples


def _random_pieces(rng, n, count, replacement):
    """`count` indices below n: with replacement, uniform draws (all at once up to
    DRAW_WHOLE_UP_TO, else 65,536 at a time); without, successive permutations, the last
    one cut."""
    piece = count if count <= DRAW_WHOLE_UP_TO else 2 ** 16
    while count > 0:
        if replacement:
            draw = rng.integers(0, n, min(count, piece), dtype=np.int64)
        else:
            draw = rng.permutation(n)[:count]
        count -= len(draw)
        yield draw


class SubsetRandomSampler(Sampler):
    """The given indices in a random order (a permutation, no replacement), seeded by
    (seed, epoch): the same order on every pass until ``set_epoch`` changes the epoch."""

    def __init__(self, indices, generator=None, seed=None):
        self.indices, self.generator = indices, generator
        self.seed, self.epoch = _resolve_seed(generator, seed), 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        for i in _epoch_rng(self.seed, self.epoch).permutation(len(self.indices)).tolist():
            yield self.indices[i]

    def __len__(self):
        return len(self.indices)


class WeightedRandomSampler(Sampler):
    """``num_samples`` indices into ``weights``, each drawn with probability proportional to its
    weight (torch.multinomial's semantics), seeded by (seed, epoch). Without replacement an index
    is drawn at most once, so at least ``num_samples`` weights must be nonzero."""

    def __init__(self, weights, num_samples, replacement=True, generator=None, seed=None):
        if not _is_positive_int(num_samples):
            raise ValueError("num_samples should be a positive integer value, but got "
                             f"num_samples={num_samples}")
        if not isinstance(replacement, bool):
            raise ValueError("replacement should be a boolean value, but got "
                             f"replacement={replacement}")
        if hasattr(weights, "tolist") and not isinstance(weights, np.ndarray):
            weights = weights.tolist()  # a pipeflow (or torch) tensor, on any device
        w = np.array(weights, dtype=np.float64)
        if w.ndim != 1:
            raise ValueError(f"weights should be a 1d sequence but given weights have shape "
                             f"{tuple(w.shape)}")
        self._check_distribution(w, int(num_samples), replacement)
        from ..factories import tensor
        self.weights = tensor(w)  # float64, as torch keeps a double tensor
        self._weights = w
        self.num_samples, self.replacement = int(num_samples), replacement
        self.generator = generator
        self.seed, self.epoch = _resolve_seed(generator, seed), 0

    @staticmethod
    def _check_distribution(w, num_samples, replacement):
        """torch.multinomial's checks and messages (raised here, at construction, rather than
        on the first pass as torch does)."""
        if replacement:
            bad = np.flatnonzero(~(w >= 0) | ~np.isfinite(w))
            if bad.size:
                which = "< 0" if not w[bad[0]] >= 0 else "= infinity or NaN"
                raise RuntimeError(f"invalid multinomial distribution (encountering probability "
                                   f"entry {which})")
        else:
            if num_samples > w.size:
                raise RuntimeError("cannot sample n_sample > prob_dist.size(-1) samples "
                                   "without replacement")
            if not np.all((w >= 0) & np.isfinite(w)):
                raise RuntimeError("probability tensor contains either `inf`, `nan` or "
                                   "element < 0")
        if not w.sum() > 0:
            raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
        if not replacement and np.count_nonzero(w) < num_samples:
            # torch's CPU kernel in recent releases pads with zero-weight indices instead; the
            # message is that of its sequential kernel (and of torch.multinomial's docs)
            raise RuntimeError("invalid multinomial distribution (with replacement=False, not "
                               "enough non-negative category to sample)")

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        rng, w = _epoch_rng(self.seed, self.epoch), self._weights
        if self.replacement:
            cdf = np.cumsum(w)
            # first index whose cumulative weight exceeds u: a zero weight is never picked
            picks = np.searchsorted(cdf, rng.random(self.num_samples) * cdf[-1], side="right")
            return iter(np.minimum(picks, w.size - 1).tolist())
        # without replacement: the top num_samples of w / Exp(1) (the exponential race, as
        # torch.multinomial), i.e. successive draws proportional to the remaining weights;
        # only nonzero weights get a positive key, and there are enough of them
        keys = w / rng.exponential(size=w.size)
        return iter(np.argsort(-keys, kind="stable")[:self.num_samples].tolist())

    def __len__(self):
        return self.num_samples


class DistributedSampler(Sampler):
    """This rank's share of a dataset: torch.utils.data.DistributedSampler's algorithm. The
    (optionally shuffled) index list is padded by repeating its start (``drop_last=False``) or
    truncated (``drop_last=True``) to a multiple of ``num_replicas``; rank r takes every
    ``num_replicas``-th index from r. The shuffle is a pure function of (seed, epoch), so every
    rank computes the same permutation; call ``set_epoch`` each epoch.

    With no process group, ``num_replicas`` and ``rank`` default to the WORLD_SIZE and RANK
    environment variables (as set by torchrun), else 1 and 0."""

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0,
                 drop_last=False):
        if num_replicas is None:
            num_replicas = int(os.environ.get("WORLD_SIZE", 1))
        if rank is None:
            rank = int(os.environ.get("RANK", 0))
        if not _is_positive_int(num_replicas):
            raise ValueError(f"num_replicas should be a positive integer, but got "
                             f"num_replicas={num_replicas}")
        if rank >= num_replicas or rank < 0:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval "
                             f"[0, {num_replicas - 1}]")
        self.dataset, self.num_replicas, self.rank = dataset, int(num_replicas), int(rank)
        self.epoch, self.drop_last, self.shuffle, self.seed = 0, drop_last, shuffle, seed
        n = len(dataset)
        if drop_last and n % self.num_replicas != 0:
            # the largest multiple of num_replicas that fits: every rank gets as many
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            indices = _epoch_rng(self.seed, self.epoch).permutation(n).tolist()
        else:
            indices = list(range(n))
        if not self.drop_last:
            padding_size = self.total_size - len(indices)
            if padding_size <= len(indices):
                indices += indices[:padding_size]
            else:
                indices += (indices * math.ceil(padding_size / len(indices)))[:padding_size]
        else:
            indices = indices[:self.total_size]
        assert len(indices) == self.total_size, (len(indices), self.total_size)
        indices = indices[self.rank:self.total_size:self.num_replicas]
        assert len(indices) == self.num_samples, (len(indices), self.num_samples)
        return iter(indices)

    def __len__(self):
        return self.num_samples


class BatchSampler(Sampler):
    def __init__(self, sampler, batch_size, drop_last):
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size should be a positive integer, but got {batch_size}")
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last

    def set_epoch(self, epoch):
        if hasattr(self.sampler, "set_epoch"):  # the sampler may be any iterable of indices
            self.sampler.set_epoch(epoch)

    def __iter__(self):
        """A sampler's order is drawn now, not at the first batch: an iterator keeps the
        epoch it was made in, even if set_epoch is called before it starts. A sampler
        without a length (an endless one, say), one longer than DRAW_WHOLE_UP_TO, or one
        that turns out longer than it says, is read batch by batch instead, as in torch."""
        size = length(self.sampler)
        if size is None or size > DRAW_WHOLE_UP_TO:
            return self._streamed(iter(self.sampler))
        order = _drawn_order(self.sampler)
        if order is not None:
            return self._batches(order)
        indices = iter(self.sampler)
        head = _keys(itertools.islice(indices, size + 1))
        if len(head) <= size:
            return self._batches(head)
        return self._streamed(itertools.chain(head.tolist(), indices))

    def _streamed(self, indices):
        while True:
            batch = list(itertools.islice(indices, self.batch_size))
            if not batch or (self.drop_last and len(batch) < self.batch_size):
                return
            yield batch

    def _batches(self, order):
        size = self.batch_size
        stop = len(order) - len(order) % size if self.drop_last else len(order)
        for start in range(0, stop, size):
            yield order[start:start + size].tolist()

    def __len__(self):
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


_ORDER_READERS = (Sampler.__iter__, RandomSampler.__iter__)
