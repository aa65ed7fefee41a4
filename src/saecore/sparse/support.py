"""The support of a batch: the ``(row, latent)`` entries a sparse step computes on.

Every product of a sparse step past the encoder touches an activation only where it, or
its gradient, can be nonzero. :class:`Support` lists those entries once, row-major, and
sorts them by latent at most once (for the weight gradients, which sum rows per latent),
so the decoder's and the encoder's backward share one sort.

Two layouts reduce to it: the nonzero (or selected) entries of a dense ``[N, d_sae]``
tensor (:meth:`Support.of_nonzeros`, :meth:`Support.at_positions`), and codes, ``m``
latents per row as a ``[N, m]`` index tensor (:meth:`Support.of_codes`, TopK's layout),
whose rows and bag starts follow from ``m`` and are formed only when a backward needs them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from saecore.sparse.rows import decoder_row_dots, latent_firing_counts, latent_runs, sum_rows_by_latent

CodeRowDots = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], "torch.Tensor | None"]
"""``(grad [N, d_in], W_dec, latents [N, m]) -> [N, m] | None``: a faster kernel for codes' row dots, or None
where it does not apply (then :func:`~saecore.sparse.rows.decoder_row_dots` computes them)."""


class Support:
    """The entries ``(row, latent)`` of an ``[N, d_sae]`` batch that a step needs, row-major.

    ``latents`` is flat ``[nnz]``; ``rows[e]`` is entry ``e``'s row, ``starts[b]`` where row
    ``b``'s entries begin (rows may be empty), ``positions[e] = row · d_sae + latent``. The
    order by latent, needed only by the backward products, is made on first use.
    """

    def __init__(
        self,
        latents: torch.Tensor,
        n_rows: int,
        d_sae: int,
        *,
        rows: torch.Tensor | None = None,
        starts: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        codes: torch.Tensor | None = None,
        code_row_dots: CodeRowDots | None = None,
    ) -> None:
        self.latents = latents
        self.n_rows = n_rows
        self.d_sae = d_sae
        self._rows = rows
        self._starts = starts
        self._positions = positions
        self._codes = codes
        self._code_row_dots = code_row_dots
        self._by_latent: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def of_nonzeros(cls, selector: torch.Tensor) -> Support:
        """The nonzero (or True) entries of ``selector`` ``[..., d_sae]``, leading dimensions flattened."""
        d_sae = selector.shape[-1]
        flat = selector.detach().reshape(-1)
        return cls.at_positions(flat.nonzero().squeeze(1), flat.numel() // d_sae, d_sae)

    @classmethod
    def at_positions(cls, positions: torch.Tensor, n_rows: int, d_sae: int) -> Support:
        """The entries at ascending flat ``positions`` (``row · d_sae + latent``) of an ``[n_rows, d_sae]`` batch."""
        rows = torch.div(positions, d_sae, rounding_mode="floor")
        return cls.of_entries(rows, positions - rows * d_sae, n_rows, d_sae, positions)

    @classmethod
    def of_entries(
        cls, rows: torch.Tensor, latents: torch.Tensor, n_rows: int, d_sae: int, positions: torch.Tensor | None = None
    ) -> Support:
        """The entries ``(rows[e], latents[e])``, ``rows`` ascending; a row's latents may come in any order.

        Every product over a support needs each row's entries together, not sorted by latent,
        so a selection that finds them row by row needs no sort.
        """
        per_row = torch.bincount(rows, minlength=n_rows)
        return cls(latents, n_rows, d_sae, rows=rows, starts=per_row.cumsum(0) - per_row, positions=positions)

    @classmethod
    def of_codes(cls, codes: torch.Tensor, d_sae: int, code_row_dots: CodeRowDots | None = None) -> Support:
        """The entries of codes ``[N, m]``: row ``n`` holds latents ``codes[n]``.

        ``code_row_dots`` is a faster kernel for the decode's value gradient, tried first.
        """
        flat = codes.reshape(-1, codes.shape[-1])
        return cls(flat.reshape(-1), flat.shape[0], d_sae, codes=flat, code_row_dots=code_row_dots)

    @property
    def size(self) -> int:
        return self.latents.numel()

    @property
    def rows(self) -> torch.Tensor:
        """The row of each entry."""
        if self._rows is None:
            self._rows = torch.arange(self.size, device=self.latents.device) // self._code_width()
        return self._rows

    @property
    def starts(self) -> torch.Tensor:
        """Where each row's entries begin, ``[N]``."""
        if self._starts is None:
            self._starts = torch.arange(0, self.size, self._code_width(), device=self.latents.device)
        return self._starts

    @property
    def positions(self) -> torch.Tensor:
        """Each entry's flat position ``row · d_sae + latent`` in the ``[N, d_sae]`` batch."""
        if self._positions is None:
            self._positions = self.rows * self.d_sae + self.latents
        return self._positions

    def _code_width(self) -> int:
        if self._codes is None:
            raise ValueError("a Support needs its rows and starts, or codes to derive them from (Support.of_codes)")
        return self._codes.shape[-1]

    def firing_counts(self, active: torch.Tensor | None = None) -> torch.Tensor:
        """Per latent, how many rows it fired on: all entries, or those where ``active`` holds."""
        return latent_firing_counts(self.latents, self.d_sae, active)

    def by_latent(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(order, latent_starts)``: the entries sorted by latent (``latent_runs``), computed once."""
        if self._by_latent is None:
            self._by_latent = latent_runs(self.latents, self.d_sae)
        return self._by_latent

    def of_latent_range(self, start: int, stop: int) -> tuple[Support, torch.Tensor]:
        """``(support, entries)``: the entries of latents ``[start, stop)``, and which of this support's they are.

        The part keeps this support's row grouping, and takes its order by latent from this
        support's (the range's entries are one run of it) instead of sorting again: nested
        prefixes (Matryoshka's levels) each sum rows by latent over their part.
        """
        in_range = (self.latents >= start) & (self.latents < stop)
        entries = in_range.nonzero().squeeze(1)
        part = Support.of_entries(self.rows[entries], self.latents[entries], self.n_rows, self.d_sae)
        order, latent_starts = self.by_latent()
        first = int(latent_starts[start]) if start < self.d_sae else self.size
        last = int(latent_starts[stop]) if stop < self.d_sae else self.size
        # The running count of in-range entries numbers them as the part does.
        part_index = in_range.cumsum(0) - 1
        part._by_latent = (part_index[order[first:last]], (latent_starts - first).clamp(0, last - first))
        return part, entries

    def sum_rows_by_latent(self, weights: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``out[i] = Σ_{entries e of latent i} weights[e] · rows[row(e)]``, shape ``[d_sae, rows.shape[1]]``."""
        return sum_rows_by_latent(weights.reshape(-1), self.latents, self.rows, rows, self.d_sae, self.by_latent())

    def row_dots(self, grad: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
        """``out[e] = grad[row(e)] · W_dec[latent(e)]``: a decode's gradient w.r.t. each entry's value, ``[nnz]``."""
        if self._code_row_dots is not None and self._codes is not None:
            dots = self._code_row_dots(grad, W_dec, self._codes)
            if dots is not None:
                return dots.reshape(-1)
        return decoder_row_dots(grad, W_dec, self.latents, self.starts, self.rows)


def per_row_sum(values: torch.Tensor, support: Support) -> torch.Tensor:
    """``Σ_i`` over each row's entries: ``[N]``, zero for empty rows."""
    return values.new_zeros(support.n_rows).index_add(0, support.rows, values)
