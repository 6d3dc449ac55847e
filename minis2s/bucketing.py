"""Batches for training: the seed's fixed-shape batches, or length buckets; optional loss mask.

Both options are **departures from the seed's numbers** and are off by default.

Masked loss (``--mask-padding``)
--------------------------------
The seed pads every target with spaces to the longest target and averages the loss and
the accuracy over all ``T_dec`` positions, padding included (most of them, on the full
corpus). With the mask, a batch carries ``mask (B, T)``, 1 at the real target positions
and 0 after them. A target text ``"\\tVa !\\n"`` of ``L = 6`` characters has ``L - 1 = 5``
real target positions (``"Va !\\n"``: the French characters and the end token). The loss
and accuracy become means over real characters of all real rows::

    loss = sum_{b,t} w_b m_bt ce_bt / sum_{b,t} w_b m_bt

Bucketing (``--bucket``)
------------------------
Each sentence gets a cell ``(E, D)``: its English length rounded up to the next encoder
width, its target length rounded up to the next decoder width. Widths come from a ladder
``step, 2 step, ..., 8 step`` then steps doubling (``8 step + 2 step, ...``), capped at the
longest sequence, so padding wastes at most ~25% of a sequence and there are few widths
(17 x 18 on the full corpus with step 8; 96 of those cells hold sentences: a bounded
number of compiled shapes). Every batch is drawn from one cell and cut to ``(B, E)`` and
``(B, D)``; only padding is cut, because every row of the cell is at most that long.

Every row therefore sees the same encoder input whichever batch it lands in: its
sentence padded with spaces to its own width ``E``. (Cutting each batch to its longest row
instead would make the encoder's final state depend on the other rows of the batch, since
the encoder reads the trailing spaces.) Translating with a bucketed model should pad the
input the same way: :func:`encoder_pad_width`. On the decoder side the cut is exact: the
decoder is causal, so positions after the target never influence earlier ones.

Within an epoch, rows keep the order of the epoch's shuffle inside their cell, and each
cell is chunked into batches. Without ``--mask-padding`` the per-sample loss is the mean
over the batch's ``D`` positions, so the padding that remains still counts.

The order of the batches
------------------------
Batches run in the order of their *middle* row's place in the epoch's shuffle, so no extra
randomness is needed. Ordering by the *first* row (as minis2s did before this fix) looks as
random but is not: a cell holding a share ``f`` of the rows has its ``k``-th batch start
near place ``64 k / f``, so the rare cells (the long sentences) put their batches at the
start of every epoch and the epoch ends on the common, short ones; the model ends each
epoch having last seen short sentences. A batch's middle row sits near ``64 (k + 1/2) / f``:
spread evenly over the epoch for every cell, whatever its share.

How a batch weighs
------------------
Without buckets every batch holds ``B`` rows of mixed lengths, and its loss is a mean (over
rows, or over real characters with the mask): an epoch's updates weigh every row (or
character) about the same. Cut to buckets, a batch of 5-character targets and one of
35-character targets would move the weights equally, the last, short batch of a cell as
much as a full one, and RMSprop's step does not shrink with the batch. So the bucketed
objective of a batch is its loss *sum* over one constant denominator, what an average full
batch holds: ``B`` rows, or ``B c̄`` real characters with the mask (``c̄`` the mean number
of real target positions per row of the dataset)::

    objective = sum_b loss_scale_b * sum_t m_bt ce_bt,   loss_scale_b = w_b / (B c̄)

The reported loss and accuracy stay means over real rows (characters), as before.

Measured (``--model luong --mask-padding``, first 3,000 pairs, seed 0, 12 epochs, greedy
chrF on the 600 validation pairs): no buckets 16.6; buckets as before (first-row order,
per-batch mean) 7.5; constant denominator alone 15.1; both changes 16.5. The scripts
and the longer comparison are in docs/performance.md ("Buckets and quality").
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from .data import Dataset

Batch = dict[str, np.ndarray]


def width_ladder(max_len: int, step: int = 8) -> np.ndarray:
    """Sequence widths ``step, 2 step, ..., 8 step, 10 step, ...`` up to ``max_len`` (included)."""
    if step <= 0:
        raise ValueError(f"bucket step must be positive, got {step}")
    widths = []
    w, inc = step, step
    while w < max_len:
        widths.append(w)
        if w >= 8 * inc:  # past 8 increments, double the increment: padding stays <= ~25%
            inc *= 2
        w += inc
    widths.append(max_len)
    return np.array(widths)


def round_up(lengths: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """The smallest width ``>= length`` for every length."""
    return widths[np.searchsorted(widths, lengths)]


def encoder_pad_width(length: int, max_encoder_seq_length: int, step: int = 8) -> int:
    """How far a bucketed model's training padded an English sentence of ``length`` chars."""
    return int(round_up(np.array([length]), width_ladder(max_encoder_seq_length, step))[0])


def target_mask(target_lengths: np.ndarray, width: int) -> np.ndarray:
    """``(B, width)`` float32: 1 where ``t < target_length - 1`` (a real target character).

    ``target_lengths`` are lengths of the target texts with their start and end tokens;
    target position ``t`` predicts character ``t + 1``, so the last real position predicts
    the end token.
    """
    return (np.arange(width)[None, :] < (target_lengths[:, None] - 1)).astype(np.float32)


def fill_rows(idx: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``(full_idx, weight)``, each ``(rows,)``: ``idx`` filled up with copies of its first
    row at weight 0 (the rule for the last, smaller batch and for device padding), so every
    batch has one shape and the filler rows change no sum."""
    n = len(idx)
    weight = np.zeros(rows, np.float32)
    weight[:n] = 1.0
    return np.concatenate([idx, np.full(rows - n, idx[0], dtype=np.asarray(idx).dtype)]), weight


class Batcher:
    """``batcher(indices)`` yields the numpy batches of one pass over ``indices``.

    Args:
        data: the dataset (integer tokens).
        batch_size: rows of real data per batch (the user's ``--batch-size``).
        rows: rows per batch array, ``>= batch_size`` (padded to a multiple of the number
            of devices); rows beyond the real ones carry weight 0. Default ``batch_size``.
        bucket: cut batches to length buckets (see the module docstring).
        mask_padding: add ``mask (rows, T)`` for a loss over real target characters only.
        step: the first width (and first increment) of the bucket ladder.

    Every batch holds ``encoder_tokens, encoder_lengths, decoder_tokens, target_tokens, weight`` (and
    ``mask``). With neither option and ``rows == batch_size`` the batches are exactly
    :func:`minis2s.batching.batches`'.
    """

    def __init__(
        self,
        data: Dataset,
        batch_size: int,
        rows: int | None = None,
        bucket: bool = False,
        mask_padding: bool = False,
        step: int = 8,
    ):
        rows = batch_size if rows is None else rows
        if rows < batch_size:
            raise ValueError(f"rows ({rows}) must be >= batch_size ({batch_size})")
        self.data, self.batch_size, self.rows = data, batch_size, rows
        self.bucket, self.mask_padding = bucket, mask_padding
        self.target_lengths = np.fromiter(map(len, data.target_texts), np.int64, len(data))
        t_enc, t_dec = data.max_encoder_seq_length, data.max_decoder_seq_length
        if bucket:
            input_lengths = np.fromiter(map(len, data.input_texts), np.int64, len(data))
            enc_widths, dec_widths = width_ladder(t_enc, step), width_ladder(t_dec, step)
            self.enc_width = round_up(input_lengths, enc_widths)  # (N,)
            self.dec_width = round_up(self.target_lengths, dec_widths)  # (N,)
            # One integer per cell, ordered by (encoder width, decoder width).
            self.cell = self.enc_width * (t_dec + 1) + self.dec_width
            # What a full batch holds on average: rows, or real target characters with the mask.
            real = self.target_lengths - 1
            self.loss_denominator = batch_size * (float(real.mean()) if mask_padding else 1.0)
        else:
            self.enc_width = np.full(len(data), t_enc)
            self.dec_width = np.full(len(data), t_dec)
            self.cell = np.zeros(len(data), np.int64)

    def plan(self, indices: np.ndarray) -> list[np.ndarray]:
        """The rows of every batch of one pass over ``indices``, in running order."""
        indices = np.asarray(indices)
        if not self.bucket:
            return [indices[s : s + self.batch_size] for s in range(0, len(indices), self.batch_size)]
        position = np.arange(len(indices))
        cells = self.cell[indices]
        order = np.lexsort((position, cells))  # by cell, then by place in the shuffle
        cells_sorted = cells[order]
        starts = np.flatnonzero(np.r_[True, cells_sorted[1:] != cells_sorted[:-1]])
        ends = np.r_[starts[1:], len(order)]
        chunks = [
            order[s : min(s + self.batch_size, e)]
            for a, e in zip(starts, ends)
            for s in range(a, e, self.batch_size)
        ]
        # Batches run in the order of their middle row in the shuffle (not their first: see
        # "The order of the batches" in the module docstring).
        chunks.sort(key=lambda c: c[(len(c) - 1) // 2])
        return [indices[c] for c in chunks]

    def batch(self, idx: np.ndarray) -> Batch:
        """The batch of rows ``idx`` (``len(idx) <= batch_size``), cut to their cell, filled up to ``rows``."""
        full, weight = fill_rows(idx, self.rows)
        e, d = int(self.enc_width[idx].max()), int(self.dec_width[idx].max())
        out = {
            "encoder_tokens": self.data.encoder_tokens[full, :e],
            "decoder_tokens": self.data.decoder_tokens[full, :d],
            "target_tokens": self.data.target_tokens[full, :d],
            "encoder_lengths": self.data.encoder_lengths[full],
            "weight": weight,
        }
        if self.mask_padding:
            out["mask"] = target_mask(self.target_lengths[full], d)
        if self.bucket:  # every batch's loss over one constant: see "How a batch weighs" above
            out["loss_scale"] = weight / np.float32(self.loss_denominator)
        return out

    def __call__(self, indices: np.ndarray) -> Iterator[Batch]:
        for idx in self.plan(indices):
            yield self.batch(idx)

    def shapes(self, indices: np.ndarray) -> set[tuple[int, int]]:
        """The distinct ``(T_enc, T_dec)`` of the batches over ``indices`` (one compile each)."""
        return {(int(self.enc_width[i].max()), int(self.dec_width[i].max())) for i in self.plan(indices)}


__all__ = ["Batcher", "encoder_pad_width", "fill_rows", "round_up", "target_mask", "width_ladder"]
