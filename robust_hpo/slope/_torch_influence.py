"""Influence slope of a torch classifier at its clean parameters — no poisoned training.

Training objective (the one ``robust_hpo.learners.networks`` minimises; clean weights 1, poison β):

    J(θ; β) = (1/n) [ Σ_i CE(f_θ(x_i), y_i) + β Σ_j CE(f_θ(x̃_j), t_j) ] + (λ/2)‖θ‖²

with n the number of clean points and λ the SGD weight decay. Implicit differentiation at β = 0:

    dθ/dβ = −A⁻¹ g_p,   g_p = (1/n) Σ_j ∇_θ CE_j,   A = H + (λ + δ) I,
    dL/dβ = ∇_θ L_trigᵀ dθ/dβ = −∇_θ L_trigᵀ A⁻¹ g_p,

where H is the Hessian of the *mean* clean cross-entropy (or its Gauss-Newton approximation
JᵀΛJ, Λ = diag(p) − ppᵀ per sample, which is positive semi-definite), L_trig the *mean*
cross-entropy on the triggered test points and δ ≥ 0 the damping. Scaling J by n gives Eq. 1
exactly (clean weight 1, poison weight β), so ``derivative`` is the paper's dL/dβ. The model is
evaluated in ``eval()`` mode (frozen batch-norm statistics), as it is trained.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robust_hpo._validation import BOOLEAN, ConstraintSpec, Interval, Options, check, check_params
from robust_hpo.errors import ValidationError
from robust_hpo.slope._result import SlopeResult, TriggerMargins
from robust_hpo.slope._torch_cg import InfluenceSolveError, conjugate_gradient
from robust_hpo.slope._torch_linearised import LinearisedNetwork
from robust_hpo.slope._torch_margins import clean_test_scale, margin_change, target_margins

HessianKind = Literal["gauss-newton", "exact"]
SolverKind = Literal["cg", "exact"]
MAX_EXACT_PARAMETERS = 4096
"""``solver="exact"`` forms the p×p matrix; above this many parameters it refuses (use CG)."""


@dataclass(frozen=True, kw_only=True)
class InfluenceConfig:
    """How the influence slope is solved.

    damping: δ added to the diagonal (besides the weight decay); the default 1e-3 is relative to
        the Hessian of the *mean* training loss. 0 is allowed only when H + λI is positive definite.
    weight_decay: λ of the training objective (torch SGD ``weight_decay``, applied to all parameters).
    hessian: "gauss-newton" (default; positive semi-definite, so CG cannot meet negative curvature)
        or "exact" (second derivatives; may be indefinite away from a minimum).
    last_layers: None = all parameters; k = only the parameters of the last k parameterised
        top-level children of an ``nn.Sequential`` (the rest is held fixed; its output is computed once).
    solver: "cg" (matrix-free) or "exact" (forms A, checks positive definiteness, Cholesky;
        at most ``MAX_EXACT_PARAMETERS`` parameters).
    tol, max_iter: CG stops at relative residual ``tol`` and fails after ``max_iter`` iterations.
        The default 1e-3 is what a slope needs: the bilinear form ``∇L_trigᵀ A⁻¹ g_p`` converges
        about quadratically in the residual (both vectors pull toward the target class); at 1e-3
        the derivative was within 2e-4 (relative) of a 1e-10 float64 solve and the trigger
        margins' derivatives within 7e-4, in every MLP and CNN configuration measured
        (docs/networks.md). 1e-4 costs ~15 % more products, 1e-2 ~20 % fewer (errors 1e-3 / 5e-3).
    hessian_samples: None = H over all clean points; k = over k clean points drawn with ``seed``.
    chunk_size: points per forward pass. cache_graphs: keep each chunk's recorded activations
        and autograd graph between Hessian products (faster; memory ≈ a few training steps over the
        Hessian points).
    dtype: precision of the products and the solve; "float32" (default, as networks are trained;
        CG reaches 1e-4 reliably) or "float64" (for tight tolerances and tests).
    """

    damping: float = 1e-3
    weight_decay: float = 0.0
    hessian: HessianKind = "gauss-newton"
    last_layers: int | None = None
    solver: SolverKind = "cg"
    tol: float = 1e-3
    max_iter: int = 1000
    hessian_samples: int | None = None
    chunk_size: int = 4096
    cache_graphs: bool = True
    dtype: Literal["float32", "float64"] = "float32"
    seed: int = 0

    constraints: ClassVar[dict[str, ConstraintSpec]] = {
        "damping": [Interval(Real, 0, None)],
        "weight_decay": [Interval(Real, 0, None)],
        "hessian": [Options(("gauss-newton", "exact"))],
        "last_layers": [Interval(Integral, 1, None), None],
        "solver": [Options(("cg", "exact"))],
        "tol": [Interval(Real, 0, 1, closed="neither")],
        "max_iter": [Interval(Integral, 1, None)],
        "hessian_samples": [Interval(Integral, 1, None), None],
        "chunk_size": [Interval(Integral, 1, None)],
        "cache_graphs": [BOOLEAN],
        "dtype": [Options(("float64", "float32"))],
        "seed": [Interval(Integral, None, None)],
    }

    def __post_init__(self) -> None:
        check_params({name: getattr(self, name) for name in self.constraints}, self.constraints)


def influence_slope(model: nn.Module, X_clean: Any, y_clean: Any, X_poison: Any, y_poison: Any,
                    X_trigger: Any, y_trigger: Any, *, config: InfluenceConfig | None = None,
                    n_clean: int | None = None, X_test: Any = None, y_test: Any = None) -> SlopeResult:
    """Backdoor slope of ``model`` at its current (clean) parameters by implicit differentiation.

    ``X_*``: inputs the model accepts, (n, ...) float arrays or tensors; ``y_*``: class indices in
    [0, k) for a model with k output logits (``y_poison`` and ``y_trigger`` are the attacker's
    targets). ``n_clean``: the clean count n of the objective (default ``len(X_clean)``).
    Returns a :class:`SlopeResult` with method "influence-cg" or "influence-exact"; ``derivative``
    is dL/dβ of the mean triggered cross-entropy, ``influence = derivative / m``. Raises
    :class:`InfluenceSolveError` when the solve fails.

    ``margins`` comes from the same solution x = A⁻¹ g_p (dθ/dβ = −x): per triggered point the
    target margin ``z_t − max_{k≠t} z_k`` at θ and its derivative ``−(J x)[t] + (J x)[c]`` (c the
    competing class at β = 0), one forward-mode pass over the triggered points. ``X_test``,
    ``y_test`` (clean test inputs and their true class indices, optional) give ``margins.scale``;
    ``details`` holds ``solve_seconds`` and ``margins_seconds``.
    """
    config = config if config is not None else InfluenceConfig()
    if not isinstance(config, InfluenceConfig):
        raise ValidationError(f"config must be an InfluenceConfig, got {type(config).__name__}")
    if not isinstance(model, nn.Module) or not any(True for _ in model.parameters()):
        raise ValidationError("model must be a torch nn.Module with parameters")
    start = time.perf_counter()
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    device = next(model.parameters()).device
    work = copy.deepcopy(model).to(dtype=dtype).eval().requires_grad_(False)
    trunk, head = _split(work, config.last_layers)

    Xc, yc = _inputs("X_clean", X_clean, "y_clean", y_clean)
    Xp, yp = _inputs("X_poison", X_poison, "y_poison", y_poison)
    Xt, yt = _inputs("X_trigger", X_trigger, "y_trigger", y_trigger)
    if (X_test is None) != (y_test is None):
        raise ValidationError("X_test and y_test must be given together (the clean test set for the "
                              "margins' scale) or not at all")
    test = None if X_test is None else _inputs("X_test", X_test, "y_test", y_test)
    n = len(Xc) if n_clean is None else n_clean
    _check_positive_int("n_clean", n)
    if config.hessian_samples is not None and config.hessian_samples < len(Xc):
        chosen = np.sort(np.random.default_rng(config.seed).choice(len(Xc), config.hessian_samples,
                                                                    replace=False))
        index = torch.from_numpy(chosen)
        Xc, yc = Xc[index], yc[index]

    Fc, Fp, Ft = (_features(trunk, X, device, dtype, config.chunk_size) for X in (Xc, Xp, Xt))
    yc, yp, yt = yc.to(device), yp.to(device), yt.to(device)
    params = [p.requires_grad_(True) for p in head.parameters()]
    with torch.no_grad():
        n_classes = head(Ft[:1]).shape[-1]
    labels = [("y_clean", yc), ("y_poison", yp), ("y_trigger", yt)]
    for name, y in labels + ([] if test is None else [("y_test", test[1])]):
        if int(y.min()) < 0 or int(y.max()) >= n_classes:
            raise ValidationError(f"{name} must hold class indices in [0, {n_classes}) for a model with "
                             f"{n_classes} outputs, got values in [{int(y.min())}, {int(y.max())}]")

    chunk = config.chunk_size
    triggered = _Triggered(head, params, Ft, yt, chunk=chunk, cache=config.cache_graphs)
    g_trigger = triggered.loss_gradient() / len(Ft)
    g_poison = _loss_gradient(head, params, Fp, yp, chunk) / n
    curvature = _Curvature(head, params, Fc, yc, kind=config.hessian, chunk=chunk,
                           cache=config.cache_graphs)
    shift = config.weight_decay + config.damping

    def matvec(v: torch.Tensor) -> torch.Tensor:
        return curvature.product(v) / len(Fc) + shift * v

    details: dict[str, Any] = {
        "hessian": config.hessian, "solver": config.solver, "weight_decay": config.weight_decay,
        "last_layers": config.last_layers, "n_parameters": int(g_poison.numel()),
        "hessian_samples": len(Fc), "dtype": config.dtype,
    }
    solve_start = time.perf_counter()
    if config.solver == "exact":
        x = _exact_solve(matvec, g_poison, details)
    else:
        solution = conjugate_gradient(matvec, g_poison, tol=config.tol, max_iter=config.max_iter)
        x = solution.x
        details.update(iterations=solution.iterations, residual=solution.residual, tol=config.tol)
    margins_start = time.perf_counter()
    derivative = -float(g_trigger @ x)
    margin, margin_derivative = triggered.margins(-x)
    scale = None
    if test is not None:
        scale = clean_test_scale(_logits(work, test[0], device, dtype, chunk), test[1])
    details.update(solve_seconds=margins_start - solve_start,
                   margins_seconds=time.perf_counter() - margins_start)
    return SlopeResult.from_derivative(
        derivative, n_poison=len(Xp), n_clean=n, n_trigger=len(Xt),
        method=f"influence-{config.solver}", loss="cross-entropy", damping=float(config.damping),
        slope_seconds=time.perf_counter() - start, details=details,
        margins=TriggerMargins(margin=margin, derivative=margin_derivative, scale=scale),
    )


def _exact_solve(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor,
                 details: dict[str, Any]) -> torch.Tensor:
    """Form A column by column, check it is positive definite, solve by Cholesky."""
    p = b.numel()
    if p > MAX_EXACT_PARAMETERS:
        raise ValidationError(f"solver='exact' forms the {p}×{p} matrix; at most {MAX_EXACT_PARAMETERS} "
                         f"parameters are allowed — use solver='cg' or fewer last_layers")
    eye = torch.eye(p, dtype=b.dtype, device=b.device)
    A = torch.stack([matvec(eye[i]) for i in range(p)])
    A = 0.5 * (A + A.T)
    eigenvalues = torch.linalg.eigvalsh(A)
    low, high = float(eigenvalues[0]), float(eigenvalues[-1])
    details.update(min_eigenvalue=low, max_eigenvalue=high)
    if not low > 0:
        raise InfluenceSolveError(
            f"the damped Hessian is not positive definite (smallest eigenvalue {low:.3g}); increase "
            f"the damping or use the Gauss-Newton Hessian"
        )
    x = torch.cholesky_solve(b[:, None], torch.linalg.cholesky(A))[:, 0]
    details["residual"] = float(torch.linalg.vector_norm(A @ x - b) / torch.linalg.vector_norm(b))
    return x


class _Curvature:
    """Products with the (Gauss-Newton or exact) Hessian of Σ CE over the Hessian points, per chunk.

    Gauss-Newton: ``Jᵀ Λ J v`` with J v by forward-mode differentiation at the recorded activations
    and Jᵀ u by one backward pass (:class:`LinearisedNetwork`); Λ = diag(p) − ppᵀ per point.
    Exact: ∂(gᵀv)/∂θ for g = ∇Σ CE built with ``create_graph`` (double backward).
    With ``cache`` the chunks' graphs are kept between products, otherwise rebuilt each time.
    """

    def __init__(self, head: nn.Module, params: list[torch.Tensor], X: torch.Tensor, y: torch.Tensor,
                 *, kind: HessianKind, chunk: int, cache: bool) -> None:
        self.head, self.params, self.kind = head, params, kind
        self.shapes = [p.shape for p in params]
        self.sizes = [p.numel() for p in params]
        self.pieces = [(X[i:i + chunk], y[i:i + chunk]) for i in range(0, len(X), chunk)]
        self.cached = [self._graph(Xc, yc) for Xc, yc in self.pieces] if cache else None

    def _graph(self, X: torch.Tensor, y: torch.Tensor) -> Any:
        if self.kind == "exact":
            with torch.enable_grad():
                loss = F.cross_entropy(self.head(X), y, reduction="sum")
                return _grads(loss, self.params, create_graph=True)
        linearised = LinearisedNetwork(self.head, self.params, X)
        return linearised, torch.softmax(linearised.logits.detach(), dim=-1)

    def product(self, v: torch.Tensor) -> torch.Tensor:
        vs = [piece.view(shape) for piece, shape in zip(torch.split(v, self.sizes), self.shapes,
                                                        strict=True)]
        total = torch.zeros_like(v)
        for index, (Xc, yc) in enumerate(self.pieces):
            graph = self.cached[index] if self.cached is not None else self._graph(Xc, yc)
            if self.kind == "exact":
                total += _flat(_grads(graph, self.params, grad_outputs=vs, retain_graph=True))
                continue
            linearised, p = graph
            jv = linearised.jvp(vs)
            u = p * jv - p * (p * jv).sum(dim=-1, keepdim=True)
            total += _flat(linearised.vjp(u))
        return total


class _Triggered:
    """The triggered points linearised at θ, chunk by chunk: their loss gradient, then their target
    margins and the margins' change along a parameter direction (the same recorded forward pass;
    without ``cache`` it is recomputed for the margins instead of kept through the solve)."""

    def __init__(self, head: nn.Module, params: list[torch.Tensor], X: torch.Tensor, y: torch.Tensor,
                 *, chunk: int, cache: bool) -> None:
        self.head, self.params, self.cache = head, params, cache
        self.pieces = [(X[i:i + chunk], y[i:i + chunk]) for i in range(0, len(X), chunk)]
        self.linearised: list[LinearisedNetwork] | None = None

    def _linearisations(self) -> list[LinearisedNetwork]:
        if self.linearised is not None:
            return self.linearised
        built = [LinearisedNetwork(self.head, self.params, X) for X, _ in self.pieces]
        if self.cache:
            self.linearised = built
        return built

    def loss_gradient(self) -> torch.Tensor:
        """∇_θ Σ CE over the triggered points (the logits' cotangent is softmax − one-hot)."""
        total = torch.zeros(sum(p.numel() for p in self.params), dtype=self.pieces[0][0].dtype,
                            device=self.pieces[0][0].device)
        for linearised, (_, y) in zip(self._linearisations(), self.pieces, strict=True):
            z = linearised.logits.detach()
            cotangent = torch.softmax(z, dim=-1) - F.one_hot(y, z.shape[-1]).to(z.dtype)
            total += _flat(linearised.vjp(cotangent))
        return total

    def margins(self, direction: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(target margins at θ, their derivative along ``direction`` = dθ/dβ), float64."""
        shapes = [p.shape for p in self.params]
        tangents = [piece.view(shape) for piece, shape in
                    zip(torch.split(direction, [p.numel() for p in self.params]), shapes, strict=True)]
        margins, changes = [], []
        for linearised, (_, y) in zip(self._linearisations(), self.pieces, strict=True):
            z = linearised.logits.detach().double()
            margin, competitors = target_margins(z, y)
            margins.append(margin)
            changes.append(margin_change(linearised.jvp(tangents).double(), y, competitors))
        return torch.cat(margins).cpu().numpy(), torch.cat(changes).cpu().numpy()


def _loss_gradient(head: nn.Module, params: list[torch.Tensor], X: torch.Tensor, y: torch.Tensor,
                   chunk: int) -> torch.Tensor:
    """∇_θ Σ CE over (X, y), flattened."""
    total = torch.zeros(sum(p.numel() for p in params), dtype=X.dtype, device=X.device)
    for i in range(0, len(X), chunk):
        with torch.enable_grad():
            loss = F.cross_entropy(head(X[i:i + chunk]), y[i:i + chunk], reduction="sum")
            total += _flat(_grads(loss, params))
    return total


@torch.no_grad()
def _logits(model: nn.Module, X: torch.Tensor, device: torch.device, dtype: torch.dtype,
            chunk: int) -> torch.Tensor:
    return torch.cat([model(X[i:i + chunk].to(device=device, dtype=dtype))
                      for i in range(0, len(X), chunk)])


def _grads(outputs: Any, params: list[torch.Tensor], **kwargs: Any) -> list[torch.Tensor]:
    """``torch.autograd.grad`` with unused parameters given zero gradients."""
    grads = torch.autograd.grad(outputs, params, allow_unused=True, **kwargs)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _split(model: nn.Module, last_layers: int | None) -> tuple[nn.Module, nn.Module]:
    """(fixed trunk, differentiated head); the trunk is the identity when ``last_layers`` is None."""
    if last_layers is None:
        return nn.Sequential(), model
    if not isinstance(model, nn.Sequential):
        raise ValidationError(f"last_layers needs an nn.Sequential model, got {type(model).__name__}")
    children = list(model.children())
    with_params = [i for i, child in enumerate(children) if any(True for _ in child.parameters())]
    if last_layers > len(with_params):
        raise ValidationError(f"last_layers = {last_layers} exceeds the model's {len(with_params)} "
                         f"parameterised top-level layers")
    cut = with_params[-last_layers]
    return nn.Sequential(*children[:cut]), nn.Sequential(*children[cut:])


@torch.no_grad()
def _features(trunk: nn.Module, X: torch.Tensor, device: torch.device, dtype: torch.dtype,
              chunk: int) -> torch.Tensor:
    """The fixed trunk's outputs, chunk by chunk (inputs are moved and cast one chunk at a time)."""
    return torch.cat([trunk(X[i:i + chunk].to(device=device, dtype=dtype))
                      for i in range(0, len(X), chunk)])


def _inputs(x_name: str, X: Any, y_name: str, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated (inputs, labels) tensors, inputs not copied; errors name the argument."""
    X_t = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X)
    if not (X_t.is_floating_point() and X_t.ndim >= 2 and len(X_t) > 0):
        raise ValidationError(f"{x_name} must be a non-empty float array of shape (n, ...), got dtype "
                         f"{X_t.dtype} and shape {tuple(X_t.shape)}")
    if not bool(torch.isfinite(X_t).all()):
        raise ValidationError(f"{x_name} contains NaN or infinite values; expected finite inputs")
    y_t = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if y_t.ndim != 1 or len(y_t) != len(X_t):
        raise ValidationError(f"{y_name} must be a 1-D array with one label per row of {x_name} "
                         f"({len(X_t)}), got shape {tuple(y_t.shape)}")
    if y_t.is_floating_point() or y_t.is_complex() or y_t.dtype == torch.bool:
        raise ValidationError(f"{y_name} must hold integer class indices, got dtype {y_t.dtype}")
    return X_t, y_t.to(torch.long)


def _check_positive_int(name: str, value: Any) -> None:
    check(name, value, [Interval(Integral, 1, None)])
