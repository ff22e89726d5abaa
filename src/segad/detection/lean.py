"""Lean map heads: anomalib's map post-processing with fewer multiply-adds, same maps.

anomalib blurs every PatchCore and PaDiM map with a 2-D Gaussian (sigma 4 -> a 33 x 33 kernel,
about 70 M multiply-adds per 256 x 256 map; 11 ms per map on OpenVINO f32 on this project's 2-core
machine, more than the backbone's share of a detector). The kernel is the outer product of two
1-D Gaussians, so `SeparableBlur` computes the same reflect-padded convolution as a row pass and a
column pass (2 x 33 taps per pixel); its maps equal the 2-D blur's up to float rounding.
`lean_copy` puts it in place of every ``GaussianBlur2d`` of a copy of a detector's torch model;
`LeanMapModule` is what a converted backend runs for one detector (`segad.storage.backends`),
whose first batch is still checked against the detector's own eager map.

Example:
    >>> import torch
    >>> from anomalib.models.components import GaussianBlur2d
    >>> blur = GaussianBlur2d(sigma=4.0)
    >>> x = torch.rand(1, 1, 64, 48)
    >>> bool(torch.allclose(SeparableBlur(blur)(x), blur(x), atol=1e-6))
    True
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

from segad.storage.backends import MapModule


class SeparableBlur(torch.nn.Module):
    """anomalib's ``GaussianBlur2d`` (padding ``same``) as a row pass then a column pass.

    Args:
        blur: the 2-D blur; ValueError unless its padding is ``same`` and its kernel (C, 1, kh, kw)
            an outer product of two vectors (a Gaussian's is).
    """

    row: torch.Tensor
    column: torch.Tensor

    def __init__(self, blur: Any) -> None:
        super().__init__()
        if blur.padding != "same":
            raise ValueError("only a blur with padding 'same' is made separable")
        kernel = blur.kernel[0, 0].double()
        column, row = kernel.sum(1), kernel.sum(0) / kernel.sum()
        if float((torch.outer(column, row) - kernel).abs().max()) > 1e-6 * float(kernel.abs().max()):
            raise ValueError("the blur kernel is not an outer product")
        self.channels = int(blur.kernel.shape[0])
        self.padding_shape = list(blur.padding_shape)
        self.border_type = str(blur.border_type)
        self.register_buffer("row", row.float().view(1, 1, 1, -1).repeat(self.channels, 1, 1, 1))
        self.register_buffer("column", column.float().view(1, 1, -1, 1).repeat(self.channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, self.padding_shape, mode=self.border_type)
        x = F.conv2d(x, self.row, groups=self.channels)
        return F.conv2d(x, self.column, groups=self.channels)


def lean_copy(model: Any, features: torch.nn.Module | None = None) -> torch.nn.Module:
    """A copy of an anomalib torch model (``detector.model``) with a `SeparableBlur` for each
    separable ``GaussianBlur2d`` and, when given, `features` in place of its ``feature_extractor``
    (whose weights are then not copied). The original is untouched."""
    from anomalib.models.components import GaussianBlur2d

    memo: dict[int, object] = {}
    for module in model.modules():
        if isinstance(module, GaussianBlur2d):
            try:
                memo[id(module)] = SeparableBlur(module)
            except ValueError:
                pass
    if features is not None:
        memo[id(model.feature_extractor)] = features
    return copy.deepcopy(model, memo)


class LeanMapModule(MapModule):
    """`segad.storage.backends.MapModule` with lean heads (`lean_copy`): a detector's raw map
    (B, 1, H, W), what a converted backend runs for one detector."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)
        self.model = lean_copy(self.model)
