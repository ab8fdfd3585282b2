"""Samplers: the order in which a loader visits a dataset. A shuffled order is a pure
function of (seed, epoch), so a run is reproducible and resumable."""
import numpy as np


class Sampler:
    def __iter__(self):
        raise NotImplementedError

    def set_epoch(self, epoch):
        """Samplers whose order depends on the epoch override this."""


class SequentialSampler(Sampler):
    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """A permutation (or draws with replacement) seeded by (seed, epoch)."""

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None,
                 seed=None):
        self.data_source, self.replacement = data_source, replacement
        self._num_samples = num_samples
        if seed is None:
            seed = generator.initial_seed() if generator is not None else \
                int(np.random.SeedSequence().entropy % (2 ** 63))
        self.seed, self.epoch = int(seed), 0
        if num_samples is not None and (not isinstance(num_samples, int) or num_samples <= 0):
            raise ValueError(f"num_samples should be a positive integer, but got {num_samples}")

    @property
    def num_samples(self):
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        n = len(self.data_source)
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.replacement:
            return iter(rng.integers(0, n, self.num_samples).tolist())
        reps = -(-self.num_samples // n) if n else 0
        order = np.concatenate([rng.permutation(n) for _ in range(reps)]) if reps else []
        return iter(list(order[:self.num_samples]))

    def __len__(self):
        return self.num_samples


class BatchSampler(Sampler):
    def __init__(self, sampler, batch_size, drop_last):
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size should be a positive integer, but got {batch_size}")
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last

    def set_epoch(self, epoch):
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        batch = []
        for index in self.sampler:
            batch.append(int(index))
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self):
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
