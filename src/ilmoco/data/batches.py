"""Batches for training: fixed-shape uint8 batches from the image cache, addressable by
(epoch, step).

Batch ``(epoch, step)`` is a pure function of the seed, so a resumed run replays exactly the
batches an uninterrupted run would have seen. The images live where they fit: on the GPU,
else in (pinned) host memory, else they are read from the memmap by a prefetching thread.
Drop-last keeps shapes static; a labelled set smaller than a batch is cycled.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import torch

from ilmoco import dist
from ilmoco.data.cache import read_rows


class BatchSource:
    """Fixed-shape uint8 batches, addressable by (epoch, step).

    ``images`` is (n, C, S, S) uint8 (an array or memmap). Each rank of a data-parallel run
    takes its contiguous slice of the global batch.
    """

    def __init__(self, images: np.ndarray, batch_size: int, seed: int, device: torch.device,
                 placement: str = "auto", labels: np.ndarray | None = None,
                 rows: np.ndarray | None = None, min_steps: int = 1):
        """``rows`` selects the samples from ``images`` (e.g. a memmap of the whole cache);
        an epoch has at least ``min_steps`` steps (a small labelled set is cycled)."""
        rows = np.arange(len(images)) if rows is None else np.asarray(rows)
        self.rows = rows
        self.n = len(rows)
        if self.n == 0:
            raise ValueError("no images to train on")
        self.world, self.rank = dist.world_size(), dist.rank()
        if batch_size % self.world:
            raise ValueError(f"batch size {batch_size} not divisible by {self.world} ranks")
        self.batch_size, self.local = batch_size, batch_size // self.world
        self.seed, self.device = seed, device
        self.steps_per_epoch = max(1, min_steps, self.n // batch_size)
        self._perm_epoch, self._perm = None, None
        self.labels = None if labels is None else torch.as_tensor(labels)
        nbytes = self.n * int(np.prod(images.shape[1:]))
        self.placement = placement if placement != "auto" else self._choose(nbytes)
        if self.placement in ("device", "host"):
            t = torch.from_numpy(read_rows(images, rows))
            if self.placement == "device":
                self.data = t.to(device)
            else:
                self.data = t.pin_memory() if device.type == "cuda" else t
        else:  # memmap: read each batch from disk, prefetched by a thread
            self.data = images
        if self.labels is not None:
            self.labels = self.labels.to(device)

    def _choose(self, nbytes: int) -> str:
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            if nbytes < 0.3 * free:
                return "device"
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            avail = 8 << 30
        return "host" if nbytes < 0.4 * avail else "memmap"

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm_epoch != epoch:
            need = self.steps_per_epoch * self.batch_size
            parts, j = [], 0
            while sum(len(p) for p in parts) < need:  # cycle a small labelled set
                parts.append(np.random.default_rng([self.seed, epoch, j]).permutation(self.n))
                j += 1
            self._perm, self._perm_epoch = np.concatenate(parts), epoch
        return self._perm

    def indices(self, epoch: int, step: int) -> np.ndarray:
        """This rank's sample indices for batch (epoch, step)."""
        start = step * self.batch_size + self.rank * self.local
        return self._permutation(epoch)[start:start + self.local]

    def batch(self, epoch: int, step: int):
        """(uint8 images on the device, labels or None) for batch (epoch, step)."""
        idx = self.indices(epoch, step)
        if self.placement == "device":
            x = self.data[torch.as_tensor(idx, device=self.device)]
        elif self.placement == "host":
            x = self.data[torch.as_tensor(idx)]
            x = x.pin_memory() if self.device.type == "cuda" else x
            x = x.to(self.device, non_blocking=True)
        else:
            x = torch.from_numpy(read_rows(self.data, self.rows[idx]))
            x = (x.pin_memory() if self.device.type == "cuda" else x).to(self.device,
                                                                         non_blocking=True)
        y = None
        if self.labels is not None:
            y = self.labels[torch.as_tensor(idx, device=self.labels.device)]
        return x, y

    def iterate(self, epoch: int, start: int = 0):
        """Batches ``start..`` of an epoch; for memmap data the next batch loads in a thread."""
        if self.placement != "memmap":
            for s in range(start, self.steps_per_epoch):
                yield s, self.batch(epoch, s)
            return
        result: dict = {}

        def load(s):
            result[s] = self.batch(epoch, s)

        t = None
        for s in range(start, self.steps_per_epoch):
            if t is None:
                load(s)
            else:
                t.join()
            if s + 1 < self.steps_per_epoch:
                t = threading.Thread(target=load, args=(s + 1,))
                t.start()
            yield s, result.pop(s)
