"""DataLoader: batches from a dataset, in the main process (workers come with their issue)."""
from .collate import default_collate
from .sampler import BatchSampler, RandomSampler, SequentialSampler


class DataLoader:
    """PyTorch's DataLoader arguments, plus ``seed=`` (the shuffle order is a function of
    (seed, epoch)) and ``device=`` (batches arrive on that device)."""

    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
                 worker_init_fn=None, prefetch_factor=None, persistent_workers=False,
                 generator=None, multiprocessing_context=None, seed=None, device=None):
        if num_workers:
            raise NotImplementedError("num_workers > 0 needs the worker pool, which is not in "
                                      "pipeflow yet; use num_workers=0")
        if batch_sampler is not None and (batch_size != 1 or shuffle or sampler is not None
                                          or drop_last):
            raise ValueError("batch_sampler option is mutually exclusive with batch_size, "
                             "shuffle, sampler, and drop_last")
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        self.dataset, self.num_workers, self.pin_memory = dataset, num_workers, pin_memory
        self.collate_fn = collate_fn or default_collate
        self.device = device
        if batch_sampler is None:
            if sampler is None:
                sampler = (RandomSampler(dataset, generator=generator, seed=seed) if shuffle
                           else SequentialSampler(dataset))
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self.batch_size, self.drop_last = batch_size, drop_last
        self.epoch = 0

    def __len__(self):
        return len(self.batch_sampler)

    def __iter__(self):
        if hasattr(self.batch_sampler, "set_epoch"):
            self.batch_sampler.set_epoch(self.epoch)
        self.epoch += 1
        fetch = getattr(self.dataset, "__getitems__", None)
        for indices in self.batch_sampler:
            samples = fetch(indices) if fetch is not None else [self.dataset[i] for i in indices]
            batch = self.collate_fn(samples)
            yield batch if self.device is None else _to_device(batch, self.device)


def _to_device(batch, device):
    if hasattr(batch, "to") and hasattr(batch, "_data"):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [_to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch
