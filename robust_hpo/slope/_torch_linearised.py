"""A network linearised in its parameters at fixed inputs: ``J v`` and ``Jᵀ u`` for J = ∂f(X; θ)/∂θ.

One forward pass records, for each top-level layer of an ``nn.Sequential``, what its tangent map
needs at the current θ (its input for Linear/Conv2d, the active mask of a ReLU, the argmax indices
of a max-pool); ``jvp`` then pushes a parameter tangent v forward through those linear maps
(forward-mode differentiation without recomputing the network: two matrix products per affine
layer, a mask or a gather elsewhere) and ``vjp`` pulls a logit cotangent back through the kept
autograd graph. A Gauss-Newton product ``Jᵀ Λ J v`` is one of each — cheaper than differentiating
``Jᵀw`` a second time (double backward), which also recomputes the backward pass's own products.

Layers without a rule (any other module, e.g. Tanh, BatchNorm, a torchvision ResNet, a nested
Sequential) and models that are not an ``nn.Sequential`` are differentiated by
``torch.func.jvp`` at their recorded input (correct for any module; it recomputes that layer's
output once per product).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.func import jvp as forward_jvp

from robust_hpo.errors import ValidationError

_LINEAR_LAYERS = (nn.Flatten, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Identity)
"""Parameter-free layers that are linear maps: their tangent map is the layer itself."""

TangentStep = Callable[[torch.Tensor | None, Sequence[torch.Tensor]], torch.Tensor | None]


class LinearisedNetwork:
    """``model`` at its current parameters on inputs ``X`` (no mini-batching: one chunk).

    ``params``: the parameters to differentiate, in ``model.parameters()`` order (all of them).
    ``logits``: f(X; θ), attached to the autograd graph that ``vjp`` uses.
    """

    def __init__(self, model: nn.Module, params: Sequence[torch.Tensor], X: torch.Tensor) -> None:
        self.params = list(params)
        position = {id(p): i for i, p in enumerate(self.params)}
        if len(position) != len(self.params) or {id(p) for p in model.parameters()} != set(position):
            raise ValidationError("params must be the model's parameters, each once")
        layers = list(model) if isinstance(model, nn.Sequential) else [model]  # as forward runs them
        owned = [[position[id(p)] for p in layer.parameters()] for layer in layers]
        if sum(len(o) for o in owned) != len(self.params):  # a parameter shared between layers
            layers, owned = [model], [list(range(len(self.params)))]
        self._steps: list[tuple[TangentStep, list[int]]] = []
        out = X
        with torch.enable_grad():
            for layer, indices in zip(layers, owned, strict=True):
                out, step = _record(layer, out)
                self._steps.append((step, indices))
        self.logits = out

    def jvp(self, tangents: Sequence[torch.Tensor]) -> torch.Tensor:
        """``J v`` (same shape as ``logits``) for ``v`` given as one tensor per parameter."""
        t: torch.Tensor | None = None
        with torch.no_grad():
            for step, indices in self._steps:
                t = step(t, [tangents[i] for i in indices])
        return torch.zeros_like(self.logits.detach()) if t is None else t

    def vjp(self, cotangent: torch.Tensor) -> list[torch.Tensor]:
        """``Jᵀ u`` as one tensor per parameter (zeros for parameters the output does not use)."""
        grads = torch.autograd.grad(self.logits, self.params, grad_outputs=cotangent,
                                    retain_graph=True, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, self.params, strict=True)]


def _record(layer: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, TangentStep]:
    """``layer(inputs)`` (on the autograd graph) and its tangent map at ``inputs``."""
    if isinstance(layer, nn.MaxPool2d) and not layer.return_indices:  # output and argmax in one pass
        out, index = F.max_pool2d(inputs, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                                  ceil_mode=layer.ceil_mode, return_indices=True)
        flat_index = index.flatten(2)
        return out, lambda t, v: None if t is None else t.flatten(2).gather(2, flat_index).view(index.shape)
    out = layer(inputs)
    return out, _tangent_step(layer, inputs.detach(), out.detach())


def _tangent_step(layer: nn.Module, x: torch.Tensor, y: torch.Tensor) -> TangentStep:
    """The map (input tangent, this layer's parameter tangents) → output tangent at input ``x``
    (output ``y``). ``None`` stands for a zero tangent (layers before the first parameterised one).
    """
    if isinstance(layer, nn.Linear):
        weight = layer.weight.detach()

        def linear(t: torch.Tensor | None, v: Sequence[torch.Tensor]) -> torch.Tensor:
            out = F.linear(x, v[0], v[1] if len(v) > 1 else None)
            return out if t is None else out + F.linear(t, weight)
        return linear
    if isinstance(layer, nn.Conv2d) and layer.padding_mode == "zeros":
        weight = layer.weight.detach()
        geometry = (layer.stride, layer.padding, layer.dilation, layer.groups)

        def conv(t: torch.Tensor | None, v: Sequence[torch.Tensor]) -> torch.Tensor:
            out = F.conv2d(x, v[0], v[1] if len(v) > 1 else None, *geometry)
            return out if t is None else out + F.conv2d(t, weight, None, *geometry)
        return conv
    if isinstance(layer, nn.ReLU):
        active = (y > 0).to(y.dtype)  # autograd's derivative of relu at 0 is 0 as well
        return lambda t, v: None if t is None else t * active
    if isinstance(layer, _LINEAR_LAYERS):
        return lambda t, v: None if t is None else layer(t)
    return _generic_step(layer, x)


def _generic_step(layer: nn.Module, x: torch.Tensor) -> TangentStep:
    """Forward-mode differentiation of any module at input ``x`` (recomputes its output)."""
    names = [name for name, _ in layer.named_parameters()]
    primals = tuple(p.detach() for _, p in layer.named_parameters())

    def step(t: torch.Tensor | None, v: Sequence[torch.Tensor]) -> torch.Tensor | None:
        if t is None and not names:
            return None

        def apply(inputs: torch.Tensor, *weights: torch.Tensor) -> Any:
            return functional_call(layer, dict(zip(names, weights, strict=True)), (inputs,))

        tangent_in = torch.zeros_like(x) if t is None else t
        with warnings.catch_warnings():  # torch's first forward-mode call scripts its decompositions
            warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated",
                                    category=FutureWarning)
            return forward_jvp(apply, (x, *primals), (tangent_in, *v))[1]
    return step
