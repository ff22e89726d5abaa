"""PatchCore's coreset (greedy k-center) computed faster, plugged in through anomalib's public API.

What anomalib 2.7 does (``KCenterGreedy``, called from ``Patchcore.fit`` at the end of the
training epoch): all patch embeddings (N, D) are projected with a ``SparseRandomProjection(eps=0.9)``
to the Johnson-Lindenstrauss dimension d = 4 ln N / (eps^2/2 - eps^3/3) (d = 285 for N = 102 400:
*more* than D = 152 of EfficientNet-Lite0's blocks.2 + blocks.4), a start index is drawn with
``torch.randint``, then k - 1 times: ``torch.linalg.norm(features - center, dim=1)`` (a new
(N, d) tensor per iteration), running minimum, argmax. The cost is k allocations and passes of
N x d floats, which dominates PatchCore's fit at larger ratios.

``coreset: fast`` (`greedy_coreset_indices`) is the **same algorithm with the same random draws and
the same arithmetic** (anomalib's own ``SparseRandomProjection`` fitted exactly as ``KCenterGreedy``
does, the same ``torch.randint`` start, distances with anomalib's expression), so it selects the
same indices in the same order. It is faster because it skips the rows a new centre cannot
change, by two exact tests (`greedy_k_center`): the triangle inequality through each row's nearest
centre, then a lower bound on the distance from the rows' top principal components and the norm
of what is left (`pca_bound_coordinates`). Only the rows that pass both are measured in full.

The bank is capped (setting ``coreset_max_bank``): k = min(int(N x ratio), cap). Greedy
k-center is a prefix process, so a capped bank is exactly the first ``cap`` centres of the uncapped
selection (same draws), and the selection costs O(N x cap) instead of O(N^2 x ratio).

Above ``coreset_chunk`` patches the selection is **merge and reduce** (the streaming k-center
scheme): the projected rows are split into ceil(N / chunk) equal runs of consecutive rows (whole
training images, in fit order), each run gets its share of the int(N x ratio) centres by the same
greedy k-center (its own ``torch.randint`` start), and when the cap binds, the union is reduced
to ``cap`` rows by greedy k-center over the union. Each run costs what one selection of at most
``chunk`` rows costs, so the coreset grows linearly with the training images (the reduction is
O(N x ratio x cap)); the union covers every run as well as that run's own selection does. At or
below ``chunk`` rows nothing changes: the selection is anomalib's.

`FastCoresetPatchcore` is an ``anomalib.models.Patchcore`` subclass overriding only ``fit`` (the
``MemoryBankMixin`` hook anomalib calls once after the training epoch): it stacks the torch
model's public ``embedding_store``, selects with `greedy_coreset_indices` and assigns the public
``memory_bank`` buffer, as ``PatchcoreModel.subsample_embedding`` does. Nothing is patched.

Example:
    >>> import torch
    >>> from segad.detection.coreset import greedy_coreset_indices
    >>> _ = torch.manual_seed(0)
    >>> len(greedy_coreset_indices(torch.randn(1000, 16), 0.01))
    10
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch

logger = logging.getLogger(__name__)

#: anomalib's KCenterGreedy projects with SparseRandomProjection(eps=0.9)
PROJECTION_EPS = 0.9
#: rows per chunk of a full distance pass (a 4096 x 284 float32 temporary is 4.6 MB)
CHUNK = 4096
#: principal components of the lower bound (at most a quarter of the projected dimension)
BOUND_COMPONENTS = 32
#: rows of the covariance sample the principal components are computed from
BOUND_SAMPLE = 65536
#: relative margin of both pruning tests over float32 rounding
MARGIN = 1e-3
#: relative rounding allowance of the bound computed for all rows as one matrix-vector product
ROUNDING = 1e-5
#: above 1/DENSE_SHARE of the rows left by the triangle test, the bound is computed for all rows
DENSE_SHARE = 8


def coreset_size(n: int, sampling_ratio: float, max_bank: int | None = None) -> int:
    """``int(n * sampling_ratio)`` as anomalib computes it, at most ``max_bank`` (None: no cap);
    ValueError when it is < 1."""
    size = int(n * sampling_ratio)
    if size <= 0:
        raise ValueError(f"coreset size int({n} x {sampling_ratio}) = {size}: raise coreset_sampling_ratio")
    if max_bank is not None:
        if max_bank < 1:
            raise ValueError(f"max_bank must be >= 1 or None, got {max_bank}")
        size = min(size, max_bank)
    return size


def project(embedding: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, d): anomalib's ``SparseRandomProjection(eps=0.9)`` fitted and applied as
    ``KCenterGreedy.select_coreset_idxs`` does (same torch/numpy random draws)."""
    from anomalib.models.components.dimensionality_reduction import SparseRandomProjection

    projection = SparseRandomProjection(eps=PROJECTION_EPS)
    projection.fit(embedding)
    return projection.transform(embedding)


def _distances(x: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """(N,) ``torch.linalg.norm(x - center, dim=1)`` in row chunks of `CHUNK` (cache-sized temporaries)."""
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for lo in range(0, x.shape[0], CHUNK):
        torch.linalg.norm(x[lo : lo + CHUNK] - center, ord=2, dim=1, out=out[lo : lo + CHUNK])
    return out


def pca_bound_coordinates(x: torch.Tensor, components: int) -> tuple[torch.Tensor, float]:
    """(N, c + 1) coordinates whose Euclidean distances never exceed those of ``x`` (N, d), and
    their rounding tolerance.

    Columns 0..c-1: the rows' coordinates on the top ``c`` principal components (computed in float64
    from an even sample of at most `BOUND_SAMPLE` rows); column c: the norm of the rest of the
    centred row. For rows a, b with coordinates p, q: |p - q| <= |x_a - x_b| for any orthonormal
    basis (Pythagoras, then the reverse triangle inequality on the remainders), so a good basis only
    makes the bound tight, never wrong. The tolerance (1e-4 x the largest centred norm) covers the
    float32 rounding of the coordinates.
    """
    n, dim = x.shape
    sample = x[:: max(1, n // BOUND_SAMPLE)].double()
    mean = sample.mean(0)
    centred = sample - mean
    _, vectors = torch.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
    basis = vectors[:, -components:].to(x.dtype).contiguous()
    mean32 = mean.to(x.dtype)
    coords = torch.empty((n, components + 1), dtype=x.dtype, device=x.device)
    largest = torch.zeros((), dtype=x.dtype, device=x.device)
    for lo in range(0, n, CHUNK):
        rows = x[lo : lo + CHUNK] - mean32
        on_basis = rows @ basis
        coords[lo : lo + CHUNK, :components] = on_basis
        coords[lo : lo + CHUNK, components] = torch.linalg.norm(rows - on_basis @ basis.T, dim=1)
        largest = torch.maximum(largest, torch.linalg.norm(rows, dim=1).max())
    return coords, 1e-4 * float(largest)


def greedy_k_center(features: torch.Tensor, k: int, start: int) -> torch.Tensor:
    """Greedy farthest-point selection of ``k`` rows of ``features`` (N, d), first row ``start``.

    Each step adds the row with the largest distance to its nearest selected row (first index on
    ties, as ``torch.max``). Returns (k,) int64 indices in selection order.

    Distances are computed with anomalib's own expression, ``torch.linalg.norm(x - c, dim=1)``,
    so every running minimum is bit-identical to ``KCenterGreedy``'s, but only for the rows that
    can change. A row x with running minimum m = |x - a| (a: its nearest centre) is skipped when
    the new centre c satisfies ``|c - a| >= 2 m`` (triangle inequality), or else when its
    `pca_bound_coordinates` lower bound on |x - c| is at least m: for the rows the triangle test
    left, or, when they are more than 1/`DENSE_SHARE` of all rows (textured parts, where the
    triangle test prunes little), for all rows as one matrix-vector product. Both tests keep a
    relative `MARGIN` (and the bound its tolerance and `ROUNDING`) over float32 rounding, so a
    skipped row could not have changed.
    """
    n, dim = features.shape
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    x = features.contiguous()
    bound, tolerance = pca_bound_coordinates(x, max(1, min(BOUND_COMPONENTS, dim // 4)))
    centers = torch.empty((k, dim), dtype=x.dtype, device=x.device)
    selected = torch.empty(k, dtype=torch.long, device=x.device)
    idx = torch.as_tensor(start, device=x.device)
    selected[0], centers[0] = idx, x[idx]
    min_d = _distances(x, x[idx])
    nearest = torch.zeros(n, dtype=torch.long, device=x.device)  # slot of each row's nearest centre
    # both tests' thresholds follow min_d; kept beside it so that a step does not rescale all N rows
    twice = 2.0 * (1.0 + MARGIN)
    reach = min_d * twice  # a centre at least this far from a row's nearest centre cannot change it
    limit2 = (min_d * (1.0 + MARGIN) + tolerance).square_()  # a bound at least sqrt(this): no change
    # |p - q|^2 = |p|^2 + |q|^2 - 2 p.q for all rows in one matrix-vector product, the norms
    # shrunk by ROUNDING so that float32 rounding can only make the bound smaller
    shrunk = bound.square().sum(1).mul_(1.0 - ROUNDING)
    gathered = torch.empty_like(min_d)
    may_change = torch.empty(n, dtype=torch.bool, device=x.device)
    below = torch.empty(n, dtype=torch.bool, device=x.device)
    for i in range(1, k):
        idx = torch.max(min_d, dim=0).indices
        center = x[idx]
        selected[i], centers[i] = idx, center
        between = torch.linalg.norm(centers[:i] - center, ord=2, dim=1)
        torch.index_select(between, 0, nearest, out=gathered)
        torch.lt(gathered, reach, out=may_change)
        if int(may_change.sum()) > n // DENSE_SHARE:  # most rows left: the bound of all rows at once
            torch.addmv(shrunk, bound, bound[idx], alpha=-2.0, out=gathered).add_(shrunk[idx])
            torch.lt(gathered, limit2, out=below)
            rows = torch.nonzero(below.logical_and_(may_change)).squeeze(1)
        else:
            rows = torch.nonzero(may_change).squeeze(1)
            rows = rows[(bound[rows] - bound[idx]).square_().sum(1) < limit2[rows]]
        dist = torch.linalg.norm(x[rows] - center, ord=2, dim=1)
        closer = dist < min_d[rows]
        rows, dist = rows[closer], dist[closer]
        min_d[rows] = dist
        nearest[rows] = i
        reach[rows] = dist * twice
        limit2[rows] = (dist * (1.0 + MARGIN) + tolerance).square_()
        min_d[idx] = 0.0  # as anomalib (its own distance is already 0)
        reach[idx] = 0.0
        limit2[idx] = 0.0
        nearest[idx] = i
    return selected


def greedy_coreset_indices(
    embedding: torch.Tensor, sampling_ratio: float, max_bank: int | None = None, chunk: int | None = None
) -> list[int]:
    """anomalib's ``KCenterGreedy(embedding, sampling_ratio).select_coreset_idxs()``, vectorised;
    with ``max_bank``, its first ``max_bank`` indices; above ``chunk`` rows, merge and reduce.

    Args:
        embedding: (N, D) patch embeddings.
        sampling_ratio: coreset size = ``int(N * sampling_ratio)``.
        max_bank: at most this many indices (None: no cap); the projection and the start are
            drawn as without a cap, so (at or below ``chunk`` rows) the result is a prefix of the
            uncapped selection.
        chunk: rows per selection (None: one selection over all N rows). With N > chunk, the rows
            are split into ceil(N / chunk) equal runs of consecutive rows, each run selects its
            share of ``int(N * sampling_ratio)`` centres, and the union is reduced to ``max_bank``
            rows by greedy k-center when the cap binds (module docstring).

    Returns:
        The selected row indices in selection order (same draws from the global torch/numpy
        random state as anomalib, so seeding before the call makes it deterministic).
    """
    if embedding.ndim != 2:
        raise ValueError(f"embedding must be (N, D), got shape {tuple(embedding.shape)}")
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be >= 1 or None, got {chunk}")
    n = embedding.shape[0]
    k = coreset_size(n, sampling_ratio, max_bank)
    features = project(embedding)
    if chunk is None or n <= chunk:
        start = torch.randint(high=n, size=(1,), device=features.device).squeeze()
        return greedy_k_center(features, k, int(start)).cpu().tolist()
    return _merge_and_reduce(features, coreset_size(n, sampling_ratio), k, chunk).cpu().tolist()


def _merge_and_reduce(features: torch.Tensor, k_all: int, k: int, chunk: int) -> torch.Tensor:
    """Greedy k-center per run of at most ``chunk`` consecutive rows of ``features`` (N, d), ``k_all``
    centres shared out over the runs (at least one each), then, when ``k < k_all``, ``k`` of their
    union by greedy k-center started at the first run's start. Returns (k,) int64 row indices."""
    n = features.shape[0]
    runs = min(math.ceil(n / chunk), k_all)
    selected = []
    lo = 0
    for size, share in zip(_even_parts(n, runs), _even_parts(k_all, runs), strict=True):
        start = int(torch.randint(high=size, size=(1,)).squeeze())
        selected.append(lo + greedy_k_center(features[lo : lo + size], share, start))
        lo += size
    union = torch.cat(selected)
    if k < len(union):
        union = union[greedy_k_center(features[union], k, 0)]
    return union


def _even_parts(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers that differ by at most one, the larger first."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def fast_coreset_patchcore_class() -> type:
    """``anomalib.models.Patchcore`` with `greedy_coreset_indices` as its memory-bank fit (the cap:
    the instance attribute ``coreset_max_bank``, set by `segad.detection.fit.build_detector`)."""
    from anomalib.models import Patchcore

    class FastCoresetPatchcore(Patchcore):
        """Patchcore whose ``fit`` selects the coreset with `greedy_coreset_indices` (same algorithm)."""

        #: CPU and wall seconds of the last coreset selection (benchmarks read them)
        coreset_seconds: float = 0.0
        coreset_wall_seconds: float = 0.0
        #: the memory bank's cap (setting ``coreset_max_bank``; None: int(N x ratio) rows)
        coreset_max_bank: int | None = None
        #: rows per selection before merge and reduce (setting ``coreset_chunk``; None: one selection)
        coreset_chunk: int | None = None

        def fit(self) -> None:
            model: Any = self.model
            if not model.embedding_store:
                raise ValueError("Embedding store is empty. Cannot perform coreset selection.")
            # detached, no autograd graph: Lightning runs this hook with gradients on, and a graph
            # kept per selected centre grew a PatchCore fit inside `kedro run` to 18 GB
            embedding = torch.vstack(model.embedding_store).detach()
            model.embedding_store.clear()
            start, wall = time.process_time(), time.perf_counter()
            with torch.no_grad():
                idx = greedy_coreset_indices(
                    embedding, self.coreset_sampling_ratio, self.coreset_max_bank, self.coreset_chunk
                )
                model.memory_bank = embedding[idx]
            self.coreset_seconds = time.process_time() - start
            self.coreset_wall_seconds = time.perf_counter() - wall
            logger.info("coreset: %d of %d patches in %.1f CPU-s", len(idx), len(embedding), self.coreset_seconds)

    return FastCoresetPatchcore
