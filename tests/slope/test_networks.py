"""Influence (CG) and finite-difference slopes for torch networks, against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import log_softmax
from torch import nn

from robust_hpo.learners._torch_models import build_network
from robust_hpo.slope.networks import (
    InfluenceConfig,
    InfluenceSolveError,
    LinearisedNetwork,
    conjugate_gradient,
    finite_difference_from_losses,
    finite_difference_slope,
    influence_slope,
    triggered_loss,
)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _problem(seed: int = 0, n: int = 40, m: int = 8, t: int = 12, d: int = 3, k: int = 3):
    rng = np.random.default_rng(seed)
    X, Xp, Xt = (rng.normal(size=(size, d)) for size in (n, m, t))
    y, yp, yt = (rng.integers(0, k, size=size) for size in (n, m, t))
    return X, y, Xp, yp, Xt, yt


def _tiny_net(seed: int = 0, d: int = 3, h: int = 4, k: int = 3) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, h), nn.Tanh(), nn.Linear(h, k)).double()


def _flat_loss(model: nn.Module, X: np.ndarray, y: np.ndarray, params: list[str]):
    """θ_subset ↦ mean CE, through torch.func.functional_call (independent of the slope's code)."""
    named = dict(model.named_parameters())
    shapes = [named[p].shape for p in params]
    sizes = [s.numel() for s in shapes]
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)

    def loss(theta: torch.Tensor) -> torch.Tensor:
        views = (q.view(s) for q, s in zip(torch.split(theta, sizes), shapes, strict=True))
        pieces = dict(zip(params, views, strict=True))
        full = {name: pieces.get(name, p.detach()) for name, p in named.items()}
        return nn.functional.cross_entropy(torch.func.functional_call(model, full, (Xt,)), yt)

    theta = torch.cat([named[p].detach().reshape(-1) for p in params])
    return loss, theta


def _reference_derivative(model, X, y, Xp, yp, Xt, yt, *, shift: float, params: list[str],
                          gauss_newton: bool = False) -> float:
    """−∇L_tᵀ (H + shift·I)⁻¹ (1/n) Σ∇ℓ_p with H formed densely by torch.autograd.functional."""
    loss_c, theta = _flat_loss(model, X, y, params)
    loss_p, _ = _flat_loss(model, Xp, yp, params)
    loss_t, _ = _flat_loss(model, Xt, yt, params)
    if gauss_newton:
        named = dict(model.named_parameters())
        shapes = [named[p].shape for p in params]
        sizes = [s.numel() for s in shapes]

        def logits(th: torch.Tensor) -> torch.Tensor:
            views = (q.view(s) for q, s in zip(torch.split(th, sizes), shapes, strict=True))
            pieces = dict(zip(params, views, strict=True))
            full = {name: pieces.get(name, p.detach()) for name, p in named.items()}
            return torch.func.functional_call(model, full, (torch.as_tensor(X),))

        J = torch.autograd.functional.jacobian(logits, theta)  # (n, k, p)
        prob = torch.softmax(logits(theta), dim=1)
        Lam = torch.diag_embed(prob) - prob[:, :, None] * prob[:, None, :]
        H = torch.einsum("nkp,nkl,nlq->pq", J, Lam, J) / len(X)
    else:
        H = torch.autograd.functional.hessian(loss_c, theta)
    g_p = torch.autograd.functional.jacobian(loss_p, theta) * len(Xp) / len(X)
    g_t = torch.autograd.functional.jacobian(loss_t, theta)
    A = H + shift * torch.eye(len(theta), dtype=theta.dtype)
    return -float(g_t @ torch.linalg.solve(A, g_p))


def _min_eigenvalue(model, X, y) -> float:
    loss, theta = _flat_loss(model, X, y, [n for n, _ in model.named_parameters()])
    return float(torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, theta))[0])


# ---------------------------------------------------------------- conjugate gradients

def test_cg_solves_spd_system_like_a_direct_solve():
    rng = np.random.default_rng(0)
    M = torch.as_tensor(rng.normal(size=(30, 30)))
    A = M @ M.T + 0.5 * torch.eye(30, dtype=torch.float64)
    b = torch.as_tensor(rng.normal(size=30))
    solution = conjugate_gradient(lambda v: A @ v, b, tol=1e-10, max_iter=200)
    torch.testing.assert_close(solution.x, torch.linalg.solve(A, b), rtol=1e-7, atol=1e-9)
    assert solution.residual <= 1e-9
    assert 1 <= solution.iterations <= 200


def test_cg_reorthogonalisation_saves_float32_iterations_and_keeps_the_solution():
    """Outlying eigenvalues make float32 CG lose orthogonality; reorthogonalised, it does not."""
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(200, 200)))
    eigenvalues = np.concatenate([np.logspace(1, 2, 8), np.logspace(-2, 0, 192)])
    A64 = (Q * eigenvalues) @ Q.T
    A = torch.as_tensor(A64, dtype=torch.float32)
    b = torch.as_tensor(rng.normal(size=200), dtype=torch.float32)
    exact = np.linalg.solve(A64, b.double().numpy())
    kept = conjugate_gradient(lambda v: A @ v, b, tol=1e-3, max_iter=1000)
    plain = conjugate_gradient(lambda v: A @ v, b, tol=1e-3, max_iter=1000, reorthogonalise=False)
    assert kept.iterations < 0.6 * plain.iterations
    for solution in (kept, plain):
        assert solution.residual <= 1e-3
        assert np.linalg.norm(solution.x.double().numpy() - exact) <= 2e-3 * np.linalg.norm(exact)


def test_cg_zero_rhs_returns_zero_without_iterating():
    solution = conjugate_gradient(lambda v: 2 * v, torch.zeros(4, dtype=torch.float64))
    assert solution.iterations == 0 and float(solution.x.abs().max()) == 0.0


def test_cg_raises_on_negative_curvature():
    A = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
    with pytest.raises(InfluenceSolveError, match="non-positive curvature"):
        conjugate_gradient(lambda v: A @ v, torch.tensor([0.0, 1.0], dtype=torch.float64))


def test_cg_raises_when_not_converged():
    A = torch.diag(torch.logspace(0, 6, 50, dtype=torch.float64))
    b = torch.ones(50, dtype=torch.float64)
    with pytest.raises(InfluenceSolveError, match="did not converge in max_iter=3"):
        conjugate_gradient(lambda v: A @ v, b, tol=1e-8, max_iter=3)


def test_cg_raises_on_non_finite_products():
    with pytest.raises(InfluenceSolveError, match="non-finite"):
        conjugate_gradient(lambda v: v * float("nan"), torch.ones(3, dtype=torch.float64))


def test_cg_raises_when_explicit_residual_disagrees():
    calls = {"n": 0}

    def inconsistent(v: torch.Tensor) -> torch.Tensor:  # a different operator on the final check
        calls["n"] += 1
        return v if calls["n"] <= 1 else 3 * v

    with pytest.raises(InfluenceSolveError, match="explicit residual"):
        conjugate_gradient(inconsistent, torch.ones(3, dtype=torch.float64), tol=1e-8)


@pytest.mark.parametrize("kwargs, message", [
    ({"tol": 0.0}, "tol must be a number in"),
    ({"tol": 1.5}, "tol must be a number in"),
    ({"max_iter": 0}, "max_iter must be a positive integer"),
    ({"reorthogonalise": 1}, "reorthogonalise must be True or False"),
])
def test_cg_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        conjugate_gradient(lambda v: v, torch.ones(2), **kwargs)


def test_cg_rejects_matrix_rhs():
    with pytest.raises(ValueError, match="b must be a 1-D tensor"):
        conjugate_gradient(lambda v: v, torch.ones(2, 2))


# ---------------------------------------------------------------- linearised network (J v, Jᵀ u)

class _NotSequential(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x))) + self.a(x)[:, :3]  # a used twice


def _small_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_network("cnn", input_shape=(1, 6, 6), width=2, n_classes=3).double()


def _repeated_layer() -> nn.Module:
    torch.manual_seed(4)
    shared = nn.Linear(3, 3)
    return nn.Sequential(shared, nn.Tanh(), shared).double()


@pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")
@pytest.mark.parametrize("make, shape", [
    (lambda: _small_cnn(0), (7, 1, 6, 6)),                                       # conv, relu, pools
    (lambda: _tiny_net(0), (7, 3)),                                               # tanh: generic rule
    (lambda: (torch.manual_seed(1), nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 3))
              .double())[1], (7, 3)),
    (lambda: (torch.manual_seed(2), _NotSequential().double())[1], (7, 3)),      # whole-model rule
    (_repeated_layer, (7, 3)),                                  # a shared layer: whole-model rule
])
def test_linearised_network_matches_torch_func_jvp_and_autograd(make, shape):
    model = make()
    X = torch.as_tensor(np.random.default_rng(0).random(shape))
    params = list(model.parameters())
    names = [n for n, _ in model.named_parameters()]
    v = [torch.randn_like(p) for p in params]
    u = torch.randn(shape[0], 3, dtype=torch.float64)

    def f(*weights: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(model, dict(zip(names, weights, strict=True)), (X,))

    linearised = LinearisedNetwork(model, params, X)
    logits, jv, pulled = linearised.logits.detach(), linearised.jvp(v), linearised.vjp(u)
    # the references last: functional_call re-creates a shared layer's parameters
    z, expected_jv = torch.func.jvp(f, tuple(p.detach() for p in params), tuple(v))
    _, pullback = torch.func.vjp(f, *(p.detach() for p in params))
    torch.testing.assert_close(logits, z)
    torch.testing.assert_close(jv, expected_jv, rtol=1e-12, atol=1e-12)
    for got, expected in zip(pulled, pullback(u), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_linearised_network_rejects_foreign_parameters():
    model = _tiny_net(0)
    with pytest.raises(ValueError, match="params must be the model's parameters"):
        LinearisedNetwork(model, list(model.parameters())[:2], torch.zeros(2, 3, dtype=torch.float64))


# ---------------------------------------------------------------- influence slope: exactness

@pytest.mark.parametrize("solver", ["cg", "exact"])
def test_influence_exact_hessian_matches_dense_solve(solver):
    model = _tiny_net(0)
    X, y, Xp, yp, Xt, yt = _problem(0)
    shift = max(0.0, -_min_eigenvalue(model, X, y)) + 0.05
    config = InfluenceConfig(damping=shift - 0.01, weight_decay=0.01, hessian="exact", solver=solver,
                             dtype="float64", tol=1e-10)
    result = influence_slope(model, X, y, Xp, yp, Xt, yt, config=config)
    params = [n for n, _ in model.named_parameters()]
    expected = _reference_derivative(model, X, y, Xp, yp, Xt, yt, shift=shift, params=params)
    assert result.derivative == pytest.approx(expected, rel=1e-7)
    assert result.influence == pytest.approx(expected / len(Xp), rel=1e-7)
    assert result.slope == pytest.approx(-2 / math.pi * math.atan(expected / len(Xp)), rel=1e-7)
    assert result.method == f"influence-{solver}"
    assert result.details["residual"] <= 1e-9
    assert result.damping == pytest.approx(shift - 0.01)


def test_influence_gauss_newton_matches_dense_jacobian_form():
    model = _tiny_net(1)
    X, y, Xp, yp, Xt, yt = _problem(1)
    config = InfluenceConfig(damping=1e-3, hessian="gauss-newton", dtype="float64", tol=1e-11)
    result = influence_slope(model, X, y, Xp, yp, Xt, yt, config=config)
    params = [n for n, _ in model.named_parameters()]
    expected = _reference_derivative(model, X, y, Xp, yp, Xt, yt, shift=1e-3, params=params,
                                     gauss_newton=True)
    assert result.derivative == pytest.approx(expected, rel=1e-6)


def test_influence_gauss_newton_of_a_cnn_matches_dense_jacobian_form():
    model = _small_cnn(3)
    rng = np.random.default_rng(3)
    X, Xp, Xt = (rng.random((size, 1, 6, 6)) for size in (30, 6, 9))
    y, yp, yt = (rng.integers(0, 3, size=size) for size in (30, 6, 9))
    config = InfluenceConfig(damping=1e-2, hessian="gauss-newton", dtype="float64", tol=1e-11)
    result = influence_slope(model, X, y, Xp, yp, Xt, yt, config=config)
    params = [n for n, _ in model.named_parameters()]
    expected = _reference_derivative(model, X, y, Xp, yp, Xt, yt, shift=1e-2, params=params,
                                     gauss_newton=True)
    assert result.derivative == pytest.approx(expected, rel=1e-7)


def test_influence_last_layer_holds_the_rest_fixed():
    model = _tiny_net(2)
    X, y, Xp, yp, Xt, yt = _problem(2)
    config = InfluenceConfig(damping=0.01, hessian="exact", last_layers=1, dtype="float64", tol=1e-11)
    result = influence_slope(model, X, y, Xp, yp, Xt, yt, config=config)
    expected = _reference_derivative(model, X, y, Xp, yp, Xt, yt, shift=0.01,
                                     params=["2.weight", "2.bias"])
    assert result.derivative == pytest.approx(expected, rel=1e-7)
    assert result.details["n_parameters"] == 4 * 3 + 3


def test_influence_hessian_subsample_uses_the_chosen_points():
    model = _tiny_net(3)
    X, y, Xp, yp, Xt, yt = _problem(3, n=60)
    config = InfluenceConfig(damping=0.01, hessian="gauss-newton", dtype="float64", tol=1e-11,
                             hessian_samples=25, seed=7)
    result = influence_slope(model, X, y, Xp, yp, Xt, yt, config=config)
    chosen = np.sort(np.random.default_rng(7).choice(60, 25, replace=False))
    # H over the subsample (mean), the poison gradient still normalised by all 60 clean points
    params = [n for n, _ in model.named_parameters()]
    expected = _reference_derivative(model, X[chosen], y[chosen], Xp, yp, Xt, yt, shift=0.01,
                                     params=params, gauss_newton=True) * 25 / 60
    assert result.derivative == pytest.approx(expected, rel=1e-7)
    assert result.details["hessian_samples"] == 25 and result.n_clean == 60


def test_influence_matches_retraining_of_a_converged_regularised_model():
    """The independent check: implicit differentiation = central differences of retraining."""
    X, y, Xp, yp, Xt, yt = _problem(4, n=60, m=10, t=20, d=4)
    Xp[:, -1] += 2.0  # a "trigger" feature shared by poison and triggered points
    Xt[:, -1] += 2.0
    yp[:] = 2
    yt[:] = 2
    lam = 0.05

    def train(beta: float, start: nn.Module | None = None) -> nn.Module:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
        if start is not None:
            model.load_state_dict(start.state_dict())
        Xa, ya = torch.as_tensor(np.vstack([X, Xp])), torch.as_tensor(np.concatenate([y, yp]))
        w = torch.as_tensor(np.concatenate([np.ones(len(X)), np.full(len(Xp), beta)]))
        optimizer = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=2000, tolerance_grad=1e-13,
                                      tolerance_change=1e-15, history_size=50,
                                      line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            ce = nn.functional.cross_entropy(model(Xa), ya, reduction="none")
            loss = (w * ce).sum() / len(X) + lam / 2 * sum((p ** 2).sum() for p in model.parameters())
            loss.backward()
            return loss

        for _ in range(5):
            optimizer.step(closure)
        return model

    clean = train(0.0)
    assert _min_eigenvalue(clean, X, y) + lam > 0  # a strict local minimum
    X_test, y_test = _problem(5, n=30, d=4)[:2]
    config = InfluenceConfig(damping=0.0, weight_decay=lam, hessian="exact", dtype="float64", tol=1e-10)
    result = influence_slope(clean, X, y, Xp, yp, Xt, yt, config=config, X_test=X_test, y_test=y_test)
    h = 1e-3
    up_model, down_model = train(h, clean), train(-h, clean)
    up, _ = triggered_loss(up_model, Xt, yt)
    down, _ = triggered_loss(down_model, Xt, yt)
    central = (up - down) / (2 * h)
    assert result.derivative < 0  # the sign convention: poison weight lowers the triggered loss
    assert result.derivative == pytest.approx(central, rel=2e-3)
    # and the one-sided finite difference of Eq. 7 approaches it at small β
    fd_model = train(h, clean)
    fd = finite_difference_slope(clean, lambda beta: fd_model if beta == h else train(beta, clean), Xt, yt,
                                 betas=[h], n_clean=len(X), n_poison=len(Xp), X_test=X_test, y_test=y_test)
    assert fd.derivative == pytest.approx(central, rel=2e-2)

    # the margins from the same solve: z_t − z_c with c the runner-up at β = 0, held fixed
    def logits(model: nn.Module, inputs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.as_tensor(inputs)).numpy()

    rows = np.arange(len(yt))
    z0 = logits(clean, Xt)
    runner_up = np.where(np.arange(3)[None, :] == yt[:, None], -np.inf, z0).argmax(axis=1)

    def margin(model: nn.Module) -> np.ndarray:
        z = logits(model, Xt)
        return z[rows, yt] - z[rows, runner_up]

    central_margins = (margin(up_model) - margin(down_model)) / (2 * h)
    np.testing.assert_allclose(result.margins.margin, margin(clean), rtol=1e-12)
    np.testing.assert_allclose(result.margins.derivative, central_margins, rtol=1e-3)
    assert np.corrcoef(result.margins.derivative, central_margins)[0, 1] > 0.9999
    assert result.baseline_backdoor_accuracy == pytest.approx(np.mean(z0.argmax(axis=1) == yt))
    z_test = logits(clean, X_test)
    true = z_test[np.arange(len(y_test)), y_test]
    others = np.where(np.arange(3)[None, :] == y_test[:, None], -np.inf, z_test).max(axis=1)
    assert result.margins.scale == pytest.approx(np.mean(np.abs(true - others)), rel=1e-12)
    # the finite difference's margins: the same quotient on the retrained network's margins
    np.testing.assert_allclose(fd.margins.margin, margin(clean), rtol=1e-12)
    np.testing.assert_allclose(fd.margins.derivative, (margin(fd_model) - margin(clean)) / h, rtol=1e-9)
    assert np.corrcoef(fd.margins.derivative, central_margins)[0, 1] > 0.999
    assert fd.margins.scale == result.margins.scale


def test_influence_diverging_solve_raises_instead_of_returning_a_number():
    model = _tiny_net(5, h=8)
    X, y, Xp, yp, Xt, yt = _problem(5)
    assert _min_eigenvalue(model, X, y) < -1e-3  # at initialisation H is indefinite
    config = InfluenceConfig(damping=0.0, hessian="exact", dtype="float64", tol=1e-10)
    with pytest.raises(InfluenceSolveError, match="non-positive curvature"):
        influence_slope(model, X, y, Xp, yp, Xt, yt, config=config)
    with pytest.raises(InfluenceSolveError, match="not positive definite"):
        influence_slope(model, X, y, Xp, yp, Xt, yt,
                        config=InfluenceConfig(damping=0.0, hessian="exact", solver="exact"))
    with pytest.raises(InfluenceSolveError, match="did not converge"):
        influence_slope(model, X, y, Xp, yp, Xt, yt,
                        config=InfluenceConfig(damping=1e-6, max_iter=2, tol=1e-10, dtype="float64"))


def test_influence_does_not_modify_the_model():
    model = _tiny_net(6).float()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    X, y, Xp, yp, Xt, yt = _problem(6)
    influence_slope(model, X.astype(np.float32), y, Xp, yp, Xt, yt)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.dtype == torch.float32 for p in model.parameters())


# ---------------------------------------------------------------- influence slope: bad input

@pytest.mark.parametrize("kwargs, message", [
    ({"damping": -1.0}, "damping must be a finite number >= 0"),
    ({"weight_decay": float("nan")}, "weight_decay must be a finite number >= 0"),
    ({"hessian": "fisher"}, r"hessian must be one of \['gauss-newton', 'exact'\], got 'fisher'"),
    ({"solver": "lissa"}, r"solver must be one of \['cg', 'exact'\]"),
    ({"dtype": "float16"}, r"dtype must be one of \['float64', 'float32'\]"),
    ({"tol": 0}, "tol must be a number in"),
    ({"max_iter": 0}, "max_iter must be a positive integer"),
    ({"last_layers": 0}, "last_layers must be a positive integer"),
    ({"hessian_samples": -5}, "hessian_samples must be a positive integer"),
    ({"chunk_size": 1.5}, "chunk_size must be a positive integer"),
    ({"cache_graphs": "yes"}, "cache_graphs must be true or false"),
])
def test_influence_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InfluenceConfig(**kwargs)


def test_influence_input_errors():
    model = _tiny_net(0)
    X, y, Xp, yp, Xt, yt = _problem(0)
    with pytest.raises(ValueError, match=r"y_trigger must hold class indices in \[0, 3\)"):
        influence_slope(model, X, y, Xp, yp, Xt, yt + 3)
    with pytest.raises(ValueError, match="X_poison contains NaN"):
        influence_slope(model, X, y, np.full_like(Xp, np.nan), yp, Xt, yt)
    with pytest.raises(ValueError, match="y_clean must be a 1-D array with one label per row of X_clean"):
        influence_slope(model, X, y[:-1], Xp, yp, Xt, yt)
    with pytest.raises(ValueError, match="y_poison must hold integer class indices"):
        influence_slope(model, X, y, Xp, yp.astype(float), Xt, yt)
    with pytest.raises(ValueError, match="X_trigger must be a non-empty float array"):
        influence_slope(model, X, y, Xp, yp, Xt[:0], yt[:0])
    with pytest.raises(ValueError, match="last_layers = 3 exceeds the model's 2"):
        influence_slope(model, X, y, Xp, yp, Xt, yt, config=InfluenceConfig(last_layers=3))
    with pytest.raises(ValueError, match=r"last_layers needs an nn\.Sequential"):
        influence_slope(_Wrapped(model), X, y, Xp, yp, Xt, yt, config=InfluenceConfig(last_layers=1))
    with pytest.raises(ValueError, match=r"model must be a torch nn\.Module with parameters"):
        influence_slope(nn.ReLU(), X, y, Xp, yp, Xt, yt)
    with pytest.raises(ValueError, match="n_clean must be a positive integer"):
        influence_slope(model, X, y, Xp, yp, Xt, yt, n_clean=0)
    with pytest.raises(ValueError, match="config must be an InfluenceConfig"):
        influence_slope(model, X, y, Xp, yp, Xt, yt, config={"damping": 1.0})
    with pytest.raises(ValueError, match="solver='exact' forms the"):
        big = nn.Sequential(nn.Linear(3, 2000), nn.Tanh(), nn.Linear(2000, 3)).double()
        influence_slope(big, X, y, Xp, yp, Xt, yt, config=InfluenceConfig(solver="exact"))


class _Wrapped(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


# ---------------------------------------------------------------- finite differences

def test_finite_difference_arithmetic_by_hand():
    result = finite_difference_from_losses(2.0, [0.5, 0.1], [1.0, 1.9], n_clean=100, n_poison=4,
                                           n_trigger=30, backdoor_accuracy=[0.1, 0.9, 0.3])
    # sorted by β: β = 0.1 → (1.9 − 2)/0.1 = −1; β = 0.5 → (1 − 2)/0.5 = −2
    assert result.details["betas"] == [0.1, 0.5]
    assert result.details["derivatives"] == pytest.approx([-1.0, -2.0])
    assert result.derivative == pytest.approx(-1.0)  # the smallest β
    assert result.influence == pytest.approx(-0.25)
    assert result.slope == pytest.approx(2 / math.pi * math.atan(0.25))
    assert result.details["slopes"] == pytest.approx([2 / math.pi * math.atan(0.25),
                                                      2 / math.pi * math.atan(0.5)])
    assert result.details["backdoor_accuracy"] == [0.3, 0.9]
    assert result.details["backdoor_accuracy_at_zero"] == 0.1
    assert result.method == "finite-difference" and result.loss == "cross-entropy"
    assert (result.n_clean, result.n_poison, result.n_trigger) == (100, 4, 30)


def test_triggered_loss_and_fd_slope_against_numpy():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    y = np.array([0, 1, 1])

    def linear(W: list[list[float]]) -> nn.Module:
        layer = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            layer.weight.copy_(torch.tensor(W))
        return layer

    def by_hand(W: np.ndarray) -> tuple[float, float]:
        logits = X @ W.T
        return float(-log_softmax(logits, axis=1)[np.arange(3), y].mean()), float(
            np.mean(logits.argmax(1) == y))

    W0, W1 = [[1.0, 0.0], [0.0, 0.5]], [[0.5, 0.0], [0.0, 2.0]]
    loss, accuracy = triggered_loss(linear(W0), X, y)
    assert (loss, accuracy) == pytest.approx(by_hand(np.array(W0)), rel=1e-6)
    result = finite_difference_slope(linear(W0), lambda beta: linear(W1), X, y, betas=[0.2],
                                     n_clean=10, n_poison=2)
    expected = (by_hand(np.array(W1))[0] - by_hand(np.array(W0))[0]) / 0.2
    assert result.derivative == pytest.approx(expected, rel=1e-6)
    assert result.details["backdoor_accuracy"] == [pytest.approx(by_hand(np.array(W1))[1])]


def test_finite_difference_input_errors():
    with pytest.raises(ValueError, match="losses must have one value per beta"):
        finite_difference_from_losses(1.0, [0.1, 0.2], [1.0], n_clean=1, n_poison=1, n_trigger=1)
    with pytest.raises(ValueError, match="losses must be finite"):
        finite_difference_from_losses(1.0, [0.1], [float("nan")], n_clean=1, n_poison=1, n_trigger=1)
    with pytest.raises(ValueError, match="loss_at_zero must be finite"):
        finite_difference_from_losses(float("inf"), [0.1], [1.0], n_clean=1, n_poison=1, n_trigger=1)
    with pytest.raises(ValueError, match="n_poison must be a positive integer"):
        finite_difference_from_losses(1.0, [0.1], [1.0], n_clean=1, n_poison=0, n_trigger=1)
    with pytest.raises(ValueError, match="backdoor_accuracy must have one value at β = 0"):
        finite_difference_from_losses(1.0, [0.1], [1.0], n_clean=1, n_poison=1, n_trigger=1,
                                      backdoor_accuracy=[0.5])
    with pytest.raises(ValueError, match="y_trigger must hold one label per triggered input"):
        triggered_loss(nn.Linear(2, 2), np.zeros((3, 2), np.float32), np.zeros(2, int))
