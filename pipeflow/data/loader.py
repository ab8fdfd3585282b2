"""DataLoader: batches from a dataset, in the main process or from a pool of worker
processes that collate straight into a ring of shared-memory slots.

Batch order is a pure function of (seed, epoch, position) and every sample is loaded with
a random stream of its own (worker.sample_generator), so the batches do not depend on
num_workers, and the loader's whole resumable state is {seed, epoch, batches served}.

Every iterator runs an epoch of its own: one started after an iterator left its epoch
unfinished (a `break`) runs the next epoch, so it is shuffled and augmented anew, as in
PyTorch, where every iterator draws a new order. The state stays where the last iterator
stopped, so a loader given it finishes the abandoned epoch."""
import functools
import itertools
import multiprocessing
import os
import pickle
import select
import signal
import threading
import time
import weakref
from collections import deque

import numpy as np

from .. import backend
from ..tensor import Tensor
from . import collate as collate_module
from . import shared, worker
from .outbox import Outbox
from .ring import Ring
from .dataset import IterableDataset
from .sampler import DRAW_WHOLE_UP_TO, BatchSampler, RandomSampler, SequentialSampler, length


class DataLoader:
    """PyTorch's DataLoader arguments, plus ``seed=`` (the shuffle order and per-sample
    random streams are functions of (seed, epoch, sample index)) and ``device=`` (batches
    arrive on that device, copied ahead of use; a CUDA device pins the host batches, as
    pin_memory=True does, since only copies from pinned memory can overlap)."""

    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
                 worker_init_fn=None, prefetch_factor=None, persistent_workers=False,
                 generator=None, multiprocessing_context=None, seed=None, device=None):
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 "
                             "to disable multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if prefetch_factor is not None and num_workers == 0:
            raise ValueError("prefetch_factor option could only be specified in "
                             "multiprocessing. let num_workers > 0 to enable multiprocessing.")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        if num_workers and prefetch_factor is not None and prefetch_factor < 1:
            raise ValueError(f"prefetch_factor must be a positive integer, got {prefetch_factor}")
        if multiprocessing_context is not None:
            if num_workers == 0:
                raise ValueError("multiprocessing_context can only be used with multi-process "
                                 f"loading (num_workers > 0), but got num_workers={num_workers}")
            if isinstance(multiprocessing_context, str):
                methods = multiprocessing.get_all_start_methods()
                if multiprocessing_context not in methods:
                    raise ValueError(f"multiprocessing_context option should specify a valid "
                                     f"start method in {methods!r}, but got "
                                     f"multiprocessing_context={multiprocessing_context!r}")
        if batch_size is not None and (isinstance(batch_size, bool)
                                       or not isinstance(batch_size, int) or batch_size <= 0):
            raise ValueError(f"batch_size should be a positive integer value, but got "
                             f"batch_size={batch_size}")
        if batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually "
                             "exclusive with drop_last")
        self.iterable = isinstance(dataset, IterableDataset)
        if self.iterable and (shuffle or sampler is not None or batch_sampler is not None):
            raise ValueError("DataLoader with IterableDataset: expected unspecified shuffle, "
                             "sampler and batch_sampler options")
        if batch_sampler is not None and (batch_size != 1 or shuffle or sampler is not None
                                          or drop_last):
            raise ValueError("batch_sampler option is mutually exclusive with batch_size, "
                             "shuffle, sampler, and drop_last")
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if seed is None:
            seed = generator.initial_seed() if generator is not None else \
                int(np.random.SeedSequence().entropy % (2 ** 63))
        self.dataset, self.num_workers, self.seed = dataset, num_workers, int(seed)
        if batch_size is None:  # no auto-batching: samples one by one
            collate_fn = collate_module.OneSample(collate_fn)
        self.collate_fn, self.pin_memory, self.timeout = collate_fn, pin_memory, timeout
        self.worker_init_fn, self.persistent_workers = worker_init_fn, persistent_workers
        self.prefetch_factor = 2 if prefetch_factor is None and num_workers else prefetch_factor
        self.multiprocessing_context = multiprocessing_context
        self.device = None if device is None else backend.device(device)
        self.batch_size, self.drop_last = batch_size, drop_last
        self._own_sampler = not self.iterable and shuffle and sampler is None and batch_sampler is None
        if not self.iterable and batch_sampler is None:
            if sampler is None:
                sampler = (RandomSampler(dataset, seed=self.seed) if shuffle
                           else SequentialSampler(dataset))
            batch_sampler = BatchSampler(sampler, 1 if batch_size is None else batch_size,
                                         drop_last)
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self.epoch, self._resume_at, self._served = 0, 0, 0
        self._epoch_open = False  # an iterator runs self.epoch and has not finished it
        self._iterators = 0       # iterators made; only the newest one moves the state
        self._epoch_given = self._sampler_epoch()  # the sampler's epoch as the loader last set it
        self._pool = None
        self._spare_ring = None  # the last workers' ring, for the next ones to start on

    def __len__(self):
        if self.iterable:
            n, size = len(self.dataset), 1 if self.batch_size is None else self.batch_size
            return n // size if self.drop_last else -(-n // size)
        return len(self.batch_sampler)

    # --- resumable state ----------------------------------------------------------------
    def state_dict(self):
        """{seed, epoch, batches served} (and the sampler's own seed, e.g. of a user's
        WeightedRandomSampler made without one): a new loader given this state continues
        with exactly the remaining batches of the epoch (same order, same augmentations)."""
        state = {"seed": self.seed, "epoch": self.epoch, "batches_served": self._served}
        sampler = self._seeded_sampler()
        if sampler is not None:
            state["sampler_seed"] = sampler.seed
        return state

    def load_state_dict(self, state):
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])
        self._resume_at = self._served = int(state["batches_served"])
        self._epoch_open = False
        sampler = self._seeded_sampler()
        if sampler is not None and "sampler_seed" in state:
            sampler.seed = int(state["sampler_seed"])
        elif self._own_sampler:  # (a state saved before it held the sampler's seed)
            self.sampler.seed = self.seed
        if self._pool is not None and self.seed != getattr(self._pool, "seed", None):
            self._pool.shutdown()

    # --- iteration ------------------------------------------------------------------------
    def _seeded_sampler(self):
        """The (batch) sampler whose order comes from a seed of its own; None if none."""
        for sampler in (self.batch_sampler, getattr(self.batch_sampler, "sampler", None)):
            if hasattr(sampler, "seed") and hasattr(sampler, "set_epoch"):
                return sampler
        return None

    def _sampler_epoch(self):
        """The epoch the (batch) sampler holds now; None where it has none to read."""
        sampler = self.batch_sampler
        return getattr(sampler, "epoch", getattr(getattr(sampler, "sampler", None), "epoch", None))

    def _batch_indices(self, start):
        if hasattr(self.batch_sampler, "set_epoch"):
            chosen = self._sampler_epoch()
            if chosen is not None and chosen != self._epoch_given:
                self.epoch = int(chosen)  # the user's sampler.set_epoch(e), torch's idiom, wins
            self.batch_sampler.set_epoch(self.epoch)
            self._epoch_given = self._sampler_epoch()
        return itertools.islice(iter(self.batch_sampler), start, None)

    def __iter__(self):
        if self._epoch_open:  # the last iterator stopped early: this one runs the next epoch
            self.epoch += 1
        start, self._resume_at = self._resume_at, 0
        self._served, self._epoch_open = start, True
        self._iterators += 1
        if self.num_workers == 0:
            batches = _SingleProcess(self, start)
        else:  # each iterator has its own workers, unless they persist across epochs
            dealer = None if self.iterable else _Dealer(self, start)
            shares = _shares(self, dealer)
            pool = self._pool if self.persistent_workers else None
            if pool is None or not pool.alive() or pool.busy:
                if pool is not None:  # a new iterator replaces an unfinished one
                    pool.shutdown()
                pool = _WorkerPool(self, shares, self._take_ring())  # on this epoch's shares
                shares = None
                if self.persistent_workers:
                    self._pool = pool
            batches = pool.epoch(self, dealer, shares)
        epoch = batches
        if self.iterable and start:  # a stream can't seek: skip the batches already served
            batches = itertools.islice(batches, start, None)
        return _Served(self, _on_device(batches, self.device), epoch)

    def _take_ring(self):
        with _spare_rings:
            ring, self._spare_ring = self._spare_ring, None
        if ring is None:
            # The batch in use while the next one is fetched holds a slot too: one more
            # each, so that prefetch_factor batches are always on their way
            return Ring(self.num_workers, self.prefetch_factor + 1, _pin_device(self))
        ring.renew()
        return ring

    def _keep_ring(self, ring):
        """A stopped pool's ring: kept for the next workers, unless one is kept already."""
        with _spare_rings:
            if self._spare_ring is None:
                self._spare_ring, ring = ring, None
        if ring is not None:
            ring.close()

    def __del__(self):
        try:
            if getattr(self, "_pool", None) is not None:
                self._pool.shutdown()
        finally:  # (Ctrl-C in the workers' grace period: the ring they gave back, too)
            ring, self._spare_ring = getattr(self, "_spare_ring", None), None
            if ring is not None:
                ring.close()


_spare_rings = threading.Lock()  # two pools of a loader may stop at once, in two threads


class _Served:
    """The iterator a loop sees: counts served batches and finishes the epoch."""

    def __init__(self, loader, batches, epoch):
        self.loader, self.batches = loader, batches
        self.epoch = epoch  # the generator that `batches` reads: closed with it
        self.number = loader._iterators  # a newer iterator of the loader owns its state

    def __iter__(self):
        return self

    def __next__(self):
        if self.batches is None:
            raise StopIteration
        loader = self.loader
        newest = self.number == loader._iterators
        try:
            batch = next(self.batches)
        except StopIteration:
            self.batches = None
            if newest:
                loader.epoch, loader._served, loader._epoch_open = loader.epoch + 1, 0, False
            self.close()
            raise
        except BaseException:  # the epoch stays unfinished: its state resumes at this batch
            self.close()
            raise
        if newest:
            loader._served += 1
        return batch

    def close(self):
        """End the epoch (the generators' finally blocks stop or free the workers). The
        epoch's own generator is closed too: a wrapper not started yet would not."""
        batches, self.batches = self.batches, None  # (a next() now ends, counting nothing)
        if batches is None:
            return
        try:
            batches.close()
        finally:
            self.epoch.close()

    def __del__(self):
        self.close()


def _SingleProcess(loader, start):
    """Batches fetched and collated in this process (into page-locked memory when
    pinning and there is a GPU, so the copy to the device can overlap). The epoch is
    fixed now: a newer iterator moves the loader's on."""
    collate_fn = (functools.partial(collate_module.call, loader.collate_fn)
                  if loader.collate_fn is not None else collate_module.default_collate)
    if _pin_device(loader) is not None:
        collate_fn = functools.partial(_collate_pinned, loader.collate_fn)
    if loader.iterable:
        return _iterable_batches(loader, iter(loader.dataset), loader.epoch, collate_fn)
    return _fetched_batches(loader, loader._batch_indices(start), start, loader.epoch,
                            collate_fn)


def _fetched_batches(loader, batch_indices, start, epoch, collate_fn):
    for batch_id, indices in enumerate(batch_indices, start):
        try:
            samples = worker.fetch(loader.dataset, indices, loader.seed, epoch)
            worker.sample_context.set_batch(loader.seed, epoch, batch_id)
            batch = collate_fn(samples)
        except worker.SampleError as e:
            raise e.cause
        finally:  # the loop body draws from its own streams, not the last sample's
            worker.sample_context.key = None
        yield batch


def _collate_pinned(collate_fn, samples):
    """The batch, its arrays in pinned host memory (the workers' path, minus the ring)."""
    node = worker.batch_plan(samples, collate_fn)
    arrays = [backend.pinned_empty(*s.spec()) for s in collate_module.stacks(node)]
    collate_module.fill(node, arrays)
    return collate_module.assemble(node, iter(arrays))


def _iterable_batches(loader, items, epoch, collate_fn):
    size = 1 if loader.batch_size is None else loader.batch_size
    for n in itertools.count():
        worker.sample_context.set_stream(loader.seed, epoch, 0, n)
        try:
            chunk = list(itertools.islice(items, size))
        finally:
            worker.sample_context.key = None
        if not chunk or (loader.drop_last and len(chunk) < size):
            return
        yield collate_fn(chunk)


# --- the worker pool ----------------------------------------------------------------------
def _pin_device(loader):
    """The device whose copies host batches are pinned for: a CUDA `device=` (which pins
    whatever pin_memory says), else the current one when pin_memory is set (the user
    copies); None when nothing is pinned or there is no GPU."""
    on_gpu = loader.device is not None and loader.device.type == "cuda"
    if not ((loader.pin_memory or on_gpu) and backend.cuda_available()):
        return None
    return (loader.device.index or 0) if on_gpu else backend.cupy.cuda.runtime.getDevice()


def _shares(loader, dealer):
    """Each worker's first task message of an epoch: of an indexed dataset, its part of the
    `dealer`'s first deal; of an IterableDataset, a request to stream."""
    if dealer is None:
        size = 1 if loader.batch_size is None else loader.batch_size
        return [("stream", size, loader.drop_last)] * loader.num_workers
    return dealer.first_deal()


class _Dealer:
    """Deals an epoch's (batch id, indices) to the workers, batch b to worker b % n. An epoch
    of known length up to DRAW_WHOLE_UP_TO indices (judged by its first batch) goes out
    whole with the workers' first message: no message per batch. Any other, such as an
    endless sampler's, is dealt as batches are used: up to CHUNK batches per worker at a
    time, and CHUNK_INDICES indices per worker (~80 KB pickled; at least one batch), so that
    a deal mostly fits in a pipe's buffer and a worker reading it seldom waits for the main
    process to send the rest."""

    CHUNK, CHUNK_INDICES = 16, 2 ** 14

    def __init__(self, loader, start):
        self.n, self.start = loader.num_workers, start
        self.batches = enumerate(loader._batch_indices(start), start)  # (batch id, indices)
        self.failure = None  # what the batch sampler raised, at batch id `end`
        self.upcoming = self._draw()  # drawn ahead: a deal says if more will come
        self.end = start  # the first batch id not dealt yet
        self.chunk, self.chunk_indices = self.n * self.CHUNK, self.n * self.CHUNK_INDICES
        left = length(loader.batch_sampler)
        size = 0 if self.upcoming is None else length(self.upcoming[1]) or 1
        whole = left is not None and (left - start) * size <= DRAW_WHOLE_UP_TO
        self.first = (left - start, DRAW_WHOLE_UP_TO) if whole else \
            (self.chunk, self.chunk_indices)

    @property
    def more(self):
        return self.upcoming is not None

    def _draw(self):
        """The next (batch id, indices), None at the end, or where the batch sampler raises
        (raised in its turn, after the batches before it, as without workers)."""
        try:
            return next(self.batches, None)
        except Exception as e:
            self.failure = e
            return None

    def first_deal(self):
        return self.deal(*self.first)

    def next_deal(self):
        return self.deal(self.chunk, self.chunk_indices)

    def deal(self, count, max_indices):
        """The next `count` batches, fewer at the end or where they would hold more than
        `max_indices` indices (a length can be wrong), as each worker's message ("tasks",
        its batches, whether more will follow)."""
        dealt, indices = [], 0
        while self.upcoming is not None and len(dealt) < count:
            indices += length(self.upcoming[1]) or 1
            if dealt and indices > max_indices:
                break
            dealt.append(self.upcoming)
            self.upcoming = self._draw()
        start_id, n = self.end, self.n
        self.end += len(dealt)
        return [("tasks", dealt[(wid - start_id) % n::n], self.more) for wid in range(n)]


_EXHAUSTED = object()  # a worker's IterableDataset has no more batches


class _Layout:
    """A batch layout a worker sent: its plan, and where each array lies in a slot."""

    __slots__ = ("node", "specs", "offsets")

    def __init__(self, node):
        self.node = node
        self.specs = [s.spec() for s in collate_module.stacks(node)]
        self.offsets, _ = shared.layout(self.specs)


class _Failure:
    """A worker's error, raised when its batch's turn comes (earlier batches are served)."""

    def __init__(self, info):
        self.info = info


class WorkerError(RuntimeError):
    """A worker died or failed in a way that cannot be re-raised as its own exception."""


class _WorkerPool:
    """Worker processes, their pipes, and the ring of shared-memory slots they fill (see
    ring.Ring); per batch only the result crosses the pipe."""

    def __init__(self, loader, shares, ring):
        """Start the workers on `ring`, each on its share of the first epoch at once (forked
        with it, so that it needn't wait for the others to start nor for a message)."""
        ctx = loader.multiprocessing_context
        if ctx is None or isinstance(ctx, str):
            ctx = multiprocessing.get_context(ctx or worker.START_METHOD)
        self.num_workers, self.timeout, self.seed = loader.num_workers, loader.timeout, loader.seed
        self.ring, self.conns, self.procs = ring, [], []
        self.layouts = {}  # worker -> the _Layout of its last batch
        self.closed, self.busy = False, False
        # One poll set of the pipes and the workers' sentinels, made once (a
        # multiprocessing.connection.wait builds and fills a selector per call)
        self.poller, self.fd_owner = select.poll(), {}
        self.outbox = Outbox(self.poller)  # what goes to the workers, never blocking
        self._finalizer = weakref.finalize(self, _stop_workers, self.conns, self.procs, ring,
                                           weakref.ref(loader), self.outbox)
        parent = None if ctx.get_start_method() == "forkserver" else os.getpid()
        forked_by_main_thread = threading.current_thread() is threading.main_thread()
        try:
            for wid in range(loader.num_workers):
                ours, theirs = ctx.Pipe(duplex=True)
                self.conns.append(ours)
                proc = ctx.Process(target=worker.worker_loop, daemon=True,
                                   args=(wid, loader.num_workers, loader.dataset, theirs,
                                         loader.collate_fn, loader.seed, loader.worker_init_fn,
                                         parent, forked_by_main_thread, loader.epoch,
                                         shares[wid], ring.for_worker(wid), Ring.SLOT_CAP,
                                         ring.slots_each))
                proc.start()
                theirs.close()
                self.procs.append(proc)
                for fd in (ours.fileno(), proc.sentinel):
                    self.poller.register(fd, select.POLLIN)
                    self.fd_owner[fd] = wid
        except BaseException:
            self.shutdown()
            raise

    def alive(self):
        return not self.closed and all(p.is_alive() for p in self.procs)

    def epoch(self, loader, dealer, shares):
        """A generator of the epoch's batches, in order, from the workers: an indexed
        dataset's, dealt by `dealer` (whose first deal made `shares`), or an
        IterableDataset's streams. Each worker's share is sent first, unless it was started
        with it (`shares` None)."""
        self.busy = True
        tasks = None if shares is None else [("epoch", loader.epoch, loader.seed, share)
                                             for share in shares]
        batches = (self._iterable_epoch(loader, tasks) if dealer is None
                   else self._indexed_epoch(loader, dealer, tasks))
        # Run it into its try block now: an iterator dropped before its first batch then
        # ends the epoch too (an unstarted generator's close() runs nothing), so that
        # persistent workers are free for the next one instead of being replaced
        next(batches)
        return batches

    def _send(self, tasks):
        self._check_open()
        for wid, conn in enumerate(self.conns):
            try:
                self.outbox.post(conn, tasks[wid])
            except OSError:
                self._raise_dead(wid)

    def _indexed_epoch(self, loader, dealer, tasks):
        n = self.num_workers
        pending, ready, next_id = set(range(dealer.start, dealer.end)), {}, dealer.start
        failed = True
        try:
            if tasks is not None:
                self._send(tasks)
            yield  # (primed by epoch())
            while True:
                if dealer.more and dealer.end - next_id < dealer.chunk:  # deal on, ahead of use
                    dealt = dealer.end
                    self._send(dealer.next_deal())
                    pending.update(range(dealt, dealer.end))
                if next_id == dealer.end:
                    if dealer.failure is not None:
                        raise dealer.failure
                    break
                if next_id in ready:
                    batch = ready.pop(next_id)
                    if isinstance(batch, _Failure):
                        self._raise_worker_error(batch.info)
                    yield batch
                    del batch
                    next_id += 1
                    continue
                self.ring.unstall(next_id % n)
                for batch_id, batch in self._receive(pending, next_id):
                    ready[batch_id] = batch
            failed = False
        except GeneratorExit:  # the loop stopped early: persistent workers stay
            failed = False
            raise
        finally:
            self.busy = False
            self._end_epoch(loader, bool(pending) or dealer.more, failed)

    def _iterable_epoch(self, loader, tasks):
        """Each worker streams its own copy of the dataset (shard it with
        get_worker_info()); batches come round-robin, as in PyTorch."""
        active, turn, failed = list(range(self.num_workers)), 0, True
        queues = {wid: deque() for wid in active}
        try:
            if tasks is not None:
                self._send(tasks)
            yield  # (primed by epoch())
            while active:
                pos = turn % len(active)
                wid = active[pos]
                while not queues[wid]:  # a worker's batches arrive in its order
                    self.ring.unstall(wid)
                    for source, batch in self._receive(None, wid):
                        queues[source].append(batch)
                batch = queues[wid].popleft()
                if isinstance(batch, _Failure):
                    self._raise_worker_error(batch.info)
                if batch is _EXHAUSTED:
                    del active[pos]
                    turn = pos
                    continue
                yield batch
                turn += 1
            failed = False
        except GeneratorExit:
            failed = False
            raise
        finally:
            self.busy = False
            self._end_epoch(loader, bool(active), failed)

    def _end_epoch(self, loader, unfinished, failed):
        """Keep persistent workers (cancelling what is left of the epoch); else stop."""
        if loader.persistent_workers and not failed:
            try:
                if unfinished:
                    self._cancel()
                return
            except Exception:
                pass  # a pool that could not cancel cleanly is not reused
            except BaseException:  # Ctrl-C mid-cancel: stale messages must not reach an epoch
                self.shutdown()
                raise
        self.shutdown()

    def _cancel(self):
        for conn in self.conns:
            self.outbox.post(conn, ("cancel",))
        waiting = set(range(self.num_workers))
        while waiting:
            for wid, message in self._messages():
                if message[0] == "cancelled":
                    waiting.discard(wid)
                elif message[0] == "done":
                    self._batch(wid, message)  # assembled and dropped: its slot returns

    def _check_open(self):
        if self.closed:
            raise RuntimeError("this DataLoader iterator's workers were stopped: a newer "
                               "iterator of the same loader (or load_state_dict) replaced them")

    def _describe_wait(self, pending, waiting_for):
        wid = waiting_for % self.num_workers if pending is not None else waiting_for
        what = f"batch {waiting_for}" if pending is not None else "a batch"
        return f"{what} from worker {wid} (pid {self.procs[wid].pid})"

    def _messages(self, waiting_for=lambda: "the workers to cancel"):
        """(worker, message) pairs once any arrive; raises on a worker's death, or on the
        timeout naming what it was `waiting_for()`."""
        self._check_open()
        ready = self.poller.poll(self.timeout * 1000 if self.timeout else None)
        if not ready:
            raise RuntimeError(f"DataLoader timed out after {self.timeout} seconds waiting "
                               f"for {waiting_for()}")
        out = []
        for fd, event in ready:
            wid = self.fd_owner[fd]
            item = self.conns[wid]
            if event & select.POLLOUT:  # its pipe has room for what waits in the outbox
                try:
                    self.outbox.flush(fd)
                except OSError:
                    self._raise_dead(wid)
                if event == select.POLLOUT:
                    continue
            if fd != item.fileno():  # the worker's sentinel: it exited
                if item.poll() or any(w == wid for w, _ in out):  # its last words first
                    continue
                self._raise_dead(wid)
            try:
                message = item.recv()
                # a grown slot: the worker sends its new block's fd right after
                grown = shared.receive_fd(item) if message[0] == "done" and message[4] else None
            except (EOFError, OSError):  # it died before or while sending
                self._raise_dead(wid)
            if grown is not None:
                self.ring.adopt(wid, message[2], shared.Block(grown, message[4]))
            out.append((wid, message))
        return out

    def _receive(self, pending, waiting_for):
        """Results: (batch id, batch) for indexed epochs (`pending` ids), or (worker,
        batch) for streams (`pending` None); errors come back as _Failure."""
        messages = self._messages(lambda: self._describe_wait(pending, waiting_for))
        results = []
        for wid, message in messages:
            kind = message[0]
            if kind == "error":
                batch = _Failure(message[2])
                key = message[1] if pending is not None else wid
            elif kind == "exhausted":
                batch, key = _EXHAUSTED, wid
            elif kind == "done":
                batch = self._batch(wid, message)
                key = message[1] if pending is not None else wid
            else:
                continue
            if pending is not None:
                pending.discard(key)
            results.append((key, batch))
        return results

    def _batch(self, wid, message):
        _, batch_id, slot, node, _ = message
        if node is not None:  # a new layout (else: the worker's last one again)
            self.layouts[wid] = _Layout(node)
        return self._assemble(wid, slot, self.layouts[wid])

    def _assemble(self, wid, slot, layout):
        """The batch as Tensors viewing the slot, which returns to its worker only when no
        array refers to this batch any longer."""
        arrays = self.ring.arrays(wid, slot, layout.specs, layout.offsets)
        return collate_module.assemble(layout.node, iter(arrays))

    def _raise_dead(self, wid):
        proc = self.procs[wid]
        proc.join(0.1)
        code, pid = proc.exitcode, proc.pid
        self.shutdown()
        if code is not None and code < 0:
            sig = signal.Signals(-code)
            cause = {signal.SIGKILL: "it was killed, most likely by the kernel's out-of-memory "
                                     "killer (check dmesg)",
                     signal.SIGBUS: "a bus error, most likely /dev/shm ran out of space",
                     signal.SIGSEGV: "a segmentation fault in native code"}.get(
                sig, f"signal {sig.name}")
            raise WorkerError(f"DataLoader worker {wid} (pid {pid}) was killed by signal "
                              f"{sig.name}: {cause}")
        raise WorkerError(f"DataLoader worker {wid} (pid {pid}) exited unexpectedly with "
                          f"exit code {code}")

    def _raise_worker_error(self, info):
        self.shutdown()
        where = (f"in DataLoader worker {info['worker']} (pid {info['pid']})"
                 + (f" while loading sample index {info['index']}"
                    if info["index"] is not None else ""))
        text = f"{info['message']}\n\nCaught {info['type']} {where}.\nWorker traceback:\n" \
               f"{info['traceback']}"
        error = None
        if info["pickled"] is not None:
            try:
                original = pickle.loads(info["pickled"])
                # KeyError's str() is its argument's repr: the traceback would print as
                # one line of escaped newlines (torch wraps it the same way)
                error = type(original)(_Verbatim(text) if isinstance(original, KeyError)
                                       else text)
            except Exception:
                error = None
        if error is None:
            error = WorkerError(f"{info['type']}: {text}")
        error.sample_index = info["index"]
        try:
            raise error
        finally:  # a local holding the error would make a cycle through its traceback,
            del error  # keeping the loader (and persistent workers) alive until a gc

    def shutdown(self):
        if not self.closed:
            self.closed = True
            self._finalizer()


class _Verbatim(str):
    """A message whose repr is itself."""

    def __repr__(self):
        return self


def _stop_workers(conns, procs, ring, loader_ref, outbox):
    """Stop the workers; their ring goes back to the loader for the next ones (or is closed
    where the loader is gone, or a worker would not die and might still write to it). A
    worker reads "stop", or the end of its pipe where "stop" could not be sent whole; one
    that reads neither within a grace period is killed, as are all when Ctrl-C cuts the
    grace period short."""
    try:
        for conn in conns:
            try:
                outbox.post_last(conn, ("stop",))
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + _STOP_GRACE
        for proc in procs:  # one grace period for all, not one each
            proc.join(max(0.0, deadline - time.monotonic()))
    finally:
        _end_workers(conns, procs, ring, loader_ref)


_STOP_GRACE = 1.0  # seconds that stopped workers have to exit before they are killed


def _end_workers(conns, procs, ring, loader_ref):
    """Kill the workers still running, reap them, close the pipes, and keep or close the
    ring (see _stop_workers)."""
    stopped = False
    try:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        stopped = True
        for proc in procs:
            proc.join(1.0)
            if proc.is_alive():
                stopped = False
            else:
                proc.close()  # frees its sentinel descriptor now, not when a batch lets go
    finally:
        for conn in conns:
            conn.close()
        loader = loader_ref()
        if stopped and loader is not None:
            loader._keep_ring(ring)
        else:
            ring.close()


# --- device prefetch ----------------------------------------------------------------------
def _on_device(batches, device):
    """Batches moved to `device`; on CUDA batch n+1 is copied on a side stream while
    batch n is in use. The device is made current only around the loader's own CUDA
    calls, never while the loop body runs."""
    if device is None or device.type == "cpu":
        yield from batches
        return
    cupy = backend.cupy
    backend.require_cuda("DataLoader(device='cuda')")
    gpu = cupy.cuda.Device(device.index)
    stream = _side_stream(gpu)
    pending = None
    try:
        for host in batches:
            with gpu:
                # The copy's memory may be a dropped batch's, which work queued on the
                # user's stream may still read: the copy waits for that work (CuPy's pool
                # reuses a block on the stream that allocated it as soon as it is freed)
                in_use = cupy.cuda.get_current_stream().record(backend.blocking_event())
                with stream:
                    stream.wait_event(in_use)
                    moved = _map(host, lambda t: t.to(device, non_blocking=True))
                    copied = stream.record(backend.blocking_event())
            if pending is not None:
                yield _ready(gpu, *pending)
            pending = (host, moved, copied)
        if pending is not None:
            yield _ready(gpu, *pending)
    finally:
        with gpu:  # stopped early: host slots must outlive the copies reading them
            stream.synchronize()


class _CopyStreams(threading.local):
    def __init__(self):
        self.by_device = {}  # device id -> this thread's copy stream


_copy_streams = _CopyStreams()


def _side_stream(gpu):
    """The thread's copy stream for `gpu`, made once: CuPy's pool keeps the free memory of
    a stream for that stream even after it is gone, and a stream shared between threads
    would hand one loop's dropped batch to another's copy."""
    streams = _copy_streams.by_device
    if gpu.id not in streams:
        with gpu:
            streams[gpu.id] = backend.cupy.cuda.Stream(non_blocking=True)
    return streams[gpu.id]


def _ready(gpu, host, moved, copied):
    copied.synchronize()  # the copy has finished: the host slot may be reused now
    backend.release_copied()
    with gpu:
        backend.cupy.cuda.get_current_stream().wait_event(copied)
    return moved


def _map(batch, fn):
    if isinstance(batch, Tensor):
        return fn(batch)
    if isinstance(batch, dict):
        return {k: _map(v, fn) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [_map(v, fn) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch
