"""Chapters 02, 04 and 06: batch sources whose `batch(step)` is a pure function of the step.

That purity is what lets a resumed run see the very batches the uninterrupted run would have
seen, on any number of processes (`rank::world` splits one global batch).
"""

from __future__ import annotations

import numpy as np

from nextgpt_mini.constants import MODALITIES


def epoch_order(n: int, first: int, count: int, seed: list[int]) -> list[int]:
    """Positions first .. first+count-1 of an endless walk over items 0..n-1 that takes a fresh
    permutation each epoch, seeded by `seed + [epoch]`: a pure function of its arguments, which is
    what makes a resumed run see the batches the uninterrupted one would have."""
    out = []
    for k in range(first, first + count):
        epoch, pos = divmod(k, n)
        out.append(int(np.random.default_rng([*seed, epoch]).permutation(n)[pos]))
    return out


class ExampleCache(dict):
    """Tokenized examples by key, each made once: every epoch revisits the same items."""

    def get_or_make(self, key, make):
        if key not in self:
            self[key] = make()
        return self[key]


class RoundRobinBatches:
    """One modality per step, round-robin (image, video, audio, image, ...), as in NExT-GPT; each
    modality's items by a seeded permutation per epoch. Subclasses turn indices into a batch.

    `stream` keeps the walks of different stages apart (stage 2 seeds with [seed, 2, modality])."""

    def __init__(self, sets: dict, batch_size: int, seed: int = 0, stream: tuple[int, ...] = ()):
        self.sets = {m: s for m, s in sets.items() if len(s)}
        self.order = [m for m in MODALITIES if m in self.sets]
        self.batch_size, self.seed, self.stream = batch_size, seed, stream
        self.tokenized = ExampleCache()

    def indices(self, modality: str, step: int) -> list[int]:
        turn = step // len(self.order)  # how many batches of this modality came before
        return epoch_order(len(self.sets[modality]), turn * self.batch_size, self.batch_size,
                           [self.seed, *self.stream, MODALITIES.index(modality)])

    def examples(self, modality: str, indices: list[int]) -> dict:
        raise NotImplementedError

    def batch(self, step: int, rank: int = 0, world: int = 1) -> dict:
        modality = self.order[step % len(self.order)]
        return self.examples(modality, self.indices(modality, step)[rank::world])
