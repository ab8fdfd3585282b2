"""The ring: the shared-memory slots that a loader's workers collate batches into, as the
main process keeps them. A loader hands its ring from one set of workers to the next
(workers that do not persist are started anew every epoch), so its slots are created,
first touched and page-locked once, not once per epoch."""
import threading
import warnings
import weakref

import numpy as np

from .. import backend
from . import shared


class Ring:
    """Per worker: its slots' blocks, a shared flag per slot that says the slot is free, and
    a semaphore that counts the free ones. A worker takes a credit, then a flagged slot;
    the main process flags a slot and counts it up when no batch refers to it any longer,
    so no message crosses the pipe per batch except the result."""

    SLOT_CAP = 1024

    def __init__(self, num_workers, slots_each, pin_device):
        self.pin_device = pin_device  # the device slots are page-locked for; None: pageable
        self.slots_each = slots_each  # what each worker starts with
        self.blocks = {}  # (worker, slot) -> shared.Block, once the worker has written it
        self.flag_blocks, self.credits = [], []
        try:
            for _ in range(num_workers):
                self.flag_blocks.append(shared.Block(shared.create_fd(self.SLOT_CAP),
                                                     self.SLOT_CAP))
                self.credits.append(shared.Credits())
        except BaseException:
            self.close()
            raise
        self.flags = [block.array() for block in self.flag_blocks]
        self.slots = [0] * num_workers                   # slots each worker has
        self.held = [set() for _ in range(num_workers)]  # of those, the ones batches hold
        self.lock = threading.RLock()  # batches may be dropped (slots freed) in any thread
        for wid in range(num_workers):
            for _ in range(slots_each):
                self.add_slot(wid)

    def for_worker(self, wid):
        """What worker `wid` starts with: its free flags, its credits, and the blocks of its
        slots that earlier workers wrote ({slot: (descriptor, size)})."""
        blocks = {slot: (shared.Inherited(block.fd), block.size)
                  for (owner, slot), block in self.blocks.items() if owner == wid}
        return (shared.Inherited(self.flag_blocks[wid].fd),
                shared.Inherited(self.credits[wid].fd), blocks)

    def add_slot(self, wid):
        with self.lock:
            if self.slots[wid] == self.SLOT_CAP:
                raise RuntimeError(f"DataLoader worker {wid} has {self.SLOT_CAP} batches alive: "
                                   "release batches you no longer need")
            self.flags[wid][self.slots[wid]] = 1
            self.slots[wid] += 1
            self.credits[wid].release()

    def unstall(self, wid):
        """If every slot of the worker we wait for holds a batch still in use, give it one
        more (so keeping batches alive grows the ring instead of deadlocking)."""
        with self.lock:
            if len(self.held[wid]) == self.slots[wid]:
                self.add_slot(wid)

    def adopt(self, wid, slot, block):
        """A worker grew a slot (its first batch there, or a larger one): map its block.
        (The worker checked that its slots fit in shared memory before writing.)"""
        old = self.blocks.get((wid, slot))
        if old is not None:
            old.close()
        self.blocks[(wid, slot)] = block
        if self.pin_device is not None:
            try:
                block.pin(self.pin_device)
            except backend.cupy.cuda.runtime.CUDARuntimeError as e:  # e.g. not supported
                warnings.warn(f"pin_memory: the DataLoader's shared memory could not be "
                              f"page-locked ({e}); batches are copied from pageable memory")
                self.pin_device = None

    def arrays(self, wid, slot, specs, offsets):
        """The arrays of the batch in the slot: the slot is held until neither they nor any
        view of them is left."""
        block = self.blocks.get((wid, slot))
        owner = block.array() if block is not None else np.zeros(0, np.uint8)
        with self.lock:
            self.held[wid].add(slot)
        weakref.finalize(owner, self.release, wid, slot)
        return shared.views(owner, specs, offsets)

    def release(self, wid, slot):
        """No batch refers to the slot any longer: its worker may fill it again."""
        with self.lock:
            self.held[wid].discard(slot)
            self.flags[wid][slot] = 1
            self.credits[wid].release()

    def renew(self):
        """Ready for new workers (the last ones are gone): every slot that no batch holds is
        free, also those the last workers took but never delivered."""
        with self.lock:
            for wid, flags in enumerate(self.flags):
                count = self.slots[wid]
                flags[:count] = 1
                flags[list(self.held[wid])] = 0
                self.credits[wid].close()
                self.credits[wid] = shared.Credits(count=count - len(self.held[wid]))

    def close(self):
        """Unmap and close every block (batches still alive keep their own mappings)."""
        errors = []
        for block in list(self.blocks.values()) + self.flag_blocks + self.credits:
            try:  # (unpinning can raise after a CUDA error: the rest still close)
                block.close()
            except Exception as e:
                errors.append(e)
        self.blocks.clear()
        if errors:
            raise errors[0]
