"""Solves with the Hessian of an L2-regularised linear model: matrix-free, or factorised where cheaper.

The training objective's Hessian at the clean solution is

    H = diag(r) + Zᵀ diag(q) Z,      Z = [X, 1]  (the column of ones only with an intercept),

with ``r = (r_w, …, r_w, r_b)`` the regulariser's curvature (r_b = 0 for an unpenalised intercept)
and ``q ≥ 0`` the per-sample curvature of the weighted data term. Three ways to apply ``H⁻¹``:

* **pcg** — conjugate gradients on products ``V ↦ r ⊙ V + Zᵀ(q ⊙ (Z V))`` (O(n d) per column; all
  right-hand sides of a call share the products, see :func:`~._krylov.block_pcg`), preconditioned by
  the *curvature subset*: the k points with the largest ``q_i ‖z_i‖²`` kept exactly and all other
  points replaced by their curvature-weighted centroid (one pseudo-point of weight ``Σ_{i∉S} q_i``),
  applied by Woodbury (one (k+1)×(k+1) Cholesky, k ≈ 6√n) and, with an intercept, its Schur
  complement. P ≤ H (H − P is the other points' weighted covariance), so the preconditioned spectrum
  lies in [1, 1 + λ_max(rest)/r_w]: the points that make H ill-conditioned — those with large
  curvature — are exactly the ones kept, and the centroid carries the data's mean direction (the
  largest one for nonnegative pixels). The slope's solve stops once its value is *certified*
  (:func:`~._krylov.certified_stop`, which needs P ≤ H), otherwise at :data:`SOLVE_RTOL`.
* **primal-cholesky** — Cholesky of the (d+1)×(d+1) matrix H: O(n d² + d³).
* **dual-cholesky** — Woodbury: Cholesky of the n×n matrix ``r_w I + S X Xᵀ S`` (S = diag(√q)) plus a
  Schur complement for an unpenalised intercept: O(n² d + n³).

``space="auto"`` builds the cheaper factorisation before any iteration when it costs no more than
:data:`UPFRONT_ITERATIONS` CG iterations (n ≫ d), and otherwise chooses by a **cost model on the
measured convergence**: it starts conjugate
gradients and, after every iteration, compares the work the remaining iterations will take (the
observed rate at which the best residual so far fell, times the flops of one iteration: the products
with H and the preconditioner) with the work of the cheaper factorisation (its flop count — without
the Gram products a :class:`~._cache.GramCache` already holds, or will hold for the study's later
trials: ``XᵀX`` under a constant curvature (ridge) — divided by
:data:`FACTOR_FLOP_SPEEDUP` (times :data:`STREAMED_SPEEDUP` when X does not fit in the cache), how much
faster dense factorisations run per flop than the thin, memory-bound products of CG). When the factorisation is cheaper it is built and used; a
factorisation built at an earlier curvature (the previous Newton step of the polish, see
:mod:`._linear`) preconditions the next solves. The model counts flops and iterations, never
seconds, so the same inputs take the same path on every run: a study is bit-for-bit reproducible
whatever the machine's load. solves. ``"primal"``/``"dual"`` force a factorisation at every curvature, ``"cg"`` never factorises.

A feature that is zero on every training point (a pixel that is black in every clean image — where
a corner trigger sits) has no data term: its row and column of H are ``r_w`` on the diagonal and 0
elsewhere. Such features are solved by ``v_j / r_w``; everything above works on the others only
(d counts the active features in the costs above).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import linalg
from scipy.linalg.lapack import dpotrf as _dpotrf
from scipy.linalg.lapack import dpotrs as _dpotrs

from robust_hpo.errors import SingularHessianError, ValidationError
from robust_hpo.slope._cache import GramCache, row_norms, used_features
from robust_hpo.slope._krylov import block_pcg, certified_stop, one_blas_thread

Space = Literal["auto", "primal", "dual", "cg"]

SOLVE_RTOL = 1e-8
"""Relative residual ‖H x − v‖ / ‖v‖ to which the slope's solves are taken."""

CG_RTOL = SOLVE_RTOL  # the name earlier releases used

CERTIFY_RTOL = 1e-6
"""Relative error to which the slope's solves certify their functional (the slope) and their energy
norm when they stop before ``SOLVE_RTOL`` (:func:`~._krylov.certified_stop`): a bound, 1000× below
the 1e-3 at which the slope must match finite differences of refits."""

_FLAT_INTERCEPT = ("the intercept's Schur complement is not positive: the Hessian is singular "
                   "(all training points have vanishing curvature); pass damping > 0")


def choose_space(n: int, d: int, *, inner_cached: bool = False,
                 outer_cached: bool = False) -> Literal["primal", "dual"]:
    """The cheaper factorisation for an n×d design, by flop count (forming plus factorising)."""
    return "primal" if _factor_flops("primal", n, d, inner_cached) <= _factor_flops("dual", n, d, outer_cached) \
        else "dual"


def _factor_flops(space: str, n: int, d: int, gram_cached: bool) -> float:
    if space == "primal":
        return (0.0 if gram_cached else n * d * d) + d ** 3 / 3.0
    return (0.0 if gram_cached else n * n * d) + n ** 3 / 3.0


FACTOR_FLOP_SPEEDUP = 3.0
"""Flops per second of a dense factorisation (SYRK/GEMM + Cholesky) over those of conjugate
gradients' thin products ``X V`` / ``Xᵀ U`` when X fits in the cache (at most
:data:`CACHED_DESIGN_BYTES`). Measured at one BLAS thread on the 2-core development machine:
3–4 (n = 1350, d = 550 used pixels); a constant, not a timing, so that the choice is reproducible."""

STREAMED_SPEEDUP = 3.0
"""The further factor when X does not fit in the cache: every CG iteration streams it from memory,
while the factorisation's blocked products stay compute-bound. Measured with the above: 10 (n = 1350,
d = 9216) and 27 (n = 50,000, d = 200) in all; 3 × 3 = 9 is taken."""

CACHED_DESIGN_BYTES = 8 * 2 ** 20
"""Designs up to this size (8 n d bytes on the used features) count as cache-resident."""

UPFRONT_ITERATIONS = 10
"""A factorisation that costs no more than this many CG iterations is built before any: conjugate
gradients to ``SOLVE_RTOL`` practically never take fewer (e.g. n ≫ d: Xᵀ D X of n = 50,000 rows and
d = 200 costs about two iterations)."""

CONSTANT_UPFRONT_ITERATIONS = 50
"""As :data:`UPFRONT_ITERATIONS` under a constant curvature (ridge): there the factorisation solves
every later system exactly — the β = 1 estimate's (``solve_with_rows``), more attacks, influences —
while CG pays its iterations again for each (about 20–70 per solve on MNIST pixels)."""

STALE_UPFRONT_ITERATIONS = 2
"""As :data:`UPFRONT_ITERATIONS` when a factorisation at an earlier curvature (the previous Newton
step) preconditions the solve: CG then needs a few iterations only, so a new factorisation must be
cheaper than this many."""

GRAM_BLOCK_BYTES = 4 * 2 ** 20
"""Xᵀ diag(q) X is summed over row blocks of about this size (a scaled copy of a block, not of X)."""

COMPACT_SAVING = 0.1
"""The factorisations work on a copy of X restricted to the used features when that drops at least
this fraction of the columns (MNIST pixels: 30 %; random ReLU features: 6 of 9216, where copying
100 MB cost more than it saved)."""


def _compacts(used: np.ndarray, d: int) -> bool:
    return used.size <= (1.0 - COMPACT_SAVING) * d


def on_used_features(X: np.ndarray, cache: GramCache | None = None,
                     used: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the features some row of X uses, X on them): a copy when that drops at least
    :data:`COMPACT_SAVING` of the columns, else X itself. A feature no row uses has no data term (its
    block of the Hessian is r_w I, its coefficient 0 at the optimum). With a ``cache``, both are
    computed once per training array; ``used``: the indices, if known."""
    if used is None:
        used = cache.used_features(X) if cache is not None else used_features(X)
    if not _compacts(used, X.shape[1]):
        return used, X
    return used, (cache.on_used_features(X) if cache is not None else np.take(X, used, axis=1))


SWITCH_MARGIN = 1.5
"""Conjugate gradients hand over only when their remaining work exceeds the factorisation's by this
factor (CG may speed up; the factorisation's work is certain)."""


@dataclass
class _Design:
    """What all Hessians of one training array share (across Newton steps and attacks)."""

    X: np.ndarray                    # the training rows (products use all features)
    fit_intercept: bool
    r_w: float
    r_b: float
    cache: GramCache | None
    subset_size: int
    factor: "_Factor | None" = None  # the latest exact factorisation (at some curvature)
    subset: "_Subset | None" = None
    iterations: int = 0
    factorisations: int = 0
    methods: list[str] = field(default_factory=list)
    _row_norms: np.ndarray | None = None
    _active: tuple[np.ndarray | None, np.ndarray] | None = None
    _used: tuple[np.ndarray | None] | None = None

    @property
    def row_norms(self) -> np.ndarray:
        """‖z_i‖² (with the intercept's 1)."""
        if self._row_norms is None:
            norms = self.cache.row_norms(self.X) if self.cache is not None else row_norms(self.X)
            self._row_norms = norms + 1.0 if self.fit_intercept else norms
        return self._row_norms

    def used(self) -> np.ndarray | None:
        """Indices of the features some training point uses (None: all)."""
        if self._used is None:
            used = self.cache.used_features(self.X) if self.cache is not None else used_features(self.X)
            self._used = (None if used.size == self.X.shape[1] else used,)
        return self._used[0]

    @property
    def d_used(self) -> int:
        """The number of features the factorisations work on (see :meth:`active`)."""
        used = self.used()
        return int(used.size) if self._compacts(used) else self.X.shape[1]

    def _compacts(self, used: np.ndarray | None) -> bool:
        return used is not None and _compacts(used, self.X.shape[1])

    def active(self) -> tuple[np.ndarray | None, np.ndarray]:
        """(indices of the features some training point uses — None: all —, X on those features):
        the factorisations leave the others out (their block of H is r_w I). Only when that leaves
        out at least :data:`COMPACT_SAVING` of the features: otherwise the copy of X costs more than
        the few rows and columns it saves (they are exact either way)."""
        if self._active is None:
            used = self.used()
            X_used = self.X if used is None else on_used_features(self.X, self.cache, used)[1]
            self._active = (None if X_used is self.X else used, X_used)
        return self._active


class LinearModelHessian:
    """``H⁻¹ v`` for ``H = diag(r) + Zᵀ diag(q) Z`` (see the module docstring).

    Vectors are laid out as ``[w (d entries), b]`` when ``fit_intercept`` else ``[w]``; ``solve``
    also takes a (d[+1]) × k array of right-hand sides. ``damping`` is added to every diagonal entry
    (0 for the exact convex problem). With a ``cache``, the data-only Gram products (``X Xᵀ``; ``Xᵀ X``
    when the curvature ``q`` is constant, as for ridge) are computed once per training array.
    :meth:`with_curvature` gives the Hessian at another ``q`` sharing everything else.
    """

    def __init__(self, X: np.ndarray, q: np.ndarray, *, r_w: float, r_b: float,
                 fit_intercept: bool, space: Space = "auto", damping: float = 0.0,
                 cache: GramCache | None = None,
                 on_used: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        if r_w + damping <= 0:
            raise SingularHessianError("the weight regulariser's curvature must be positive")
        if space not in ("auto", "primal", "dual", "cg"):
            raise ValidationError(f"space must be 'auto', 'primal', 'dual' or 'cg', got {space!r}")
        n = X.shape[0]
        design = _Design(X=X, fit_intercept=fit_intercept, r_w=float(r_w) + damping, r_b=float(r_b) + damping,
                         cache=cache, subset_size=min(n, max(32, int(6 * math.sqrt(n)))))
        if on_used is not None:  # the caller's on_used_features(X)
            used, X_used = on_used
            design._used = (None if used.size == X.shape[1] else used,)
            design._active = (None if X_used is X else used, X_used)
        self._init(design, np.asarray(q, dtype=np.float64), space)

    def _init(self, design: _Design, q: np.ndarray, space: Space) -> None:
        self._design = design
        self.q = q
        self.space = space
        self.n, self.d = design.X.shape
        self.fit_intercept = design.fit_intercept
        self.r_w, self.r_b = design.r_w, design.r_b
        if design.fit_intercept and not self.r_b + q.sum() > 1e-12 * max(1.0, q.sum()):
            raise SingularHessianError(_FLAT_INTERCEPT)
        self._constant = bool(q.size and np.ptp(q) == 0)
        if space in ("primal", "dual"):
            self._factorise(space)

    def with_curvature(self, q: np.ndarray) -> "LinearModelHessian":
        """The Hessian of the same design at curvature ``q`` (its preconditioner: the latest one)."""
        other = LinearModelHessian.__new__(LinearModelHessian)
        other._init(self._design, np.asarray(q, dtype=np.float64), self.space)
        return other

    # -- reporting ---------------------------------------------------------------------------------
    @property
    def method(self) -> str:
        """How the solves were done: ``"pcg"``, ``"primal-cholesky"``, ``"dual-cholesky"``, or
        ``"pcg+primal-cholesky"`` (``+dual``) when the cost model switched to a factorisation."""
        methods = self._design.methods or ["pcg" if self.space in ("auto", "cg") else f"{self.space}-cholesky"]
        return "+".join(dict.fromkeys(methods))

    @property
    def cg_iterations(self) -> int:
        """Products with H taken by conjugate gradients over all solves of this design."""
        return self._design.iterations

    # -- products --------------------------------------------------------------------------------
    def _matmat(self, V: np.ndarray) -> np.ndarray:
        """H V for V laid out as [w, b] (or [w]); the products run on the used features only (the
        others' block of H is r_w I), one column as matrix–vector products."""
        D = self._design
        active, Xa = D.active()
        one = V.shape[1] == 1
        W = V[:-1] if D.fit_intercept else V
        Wa = W if active is None else W[active]
        U = Xa @ (Wa[:, 0] if one else Wa)
        if D.fit_intercept:
            U += V[-1, 0] if one else V[-1]
        U *= self.q if one else self.q[:, None]
        G = Xa.T @ U
        out = D.r_w * V
        out_w = out[:-1] if D.fit_intercept else out
        if active is None:
            out_w += G[:, None] if one else G
        else:
            out_w[active] += G[:, None] if one else G
        if D.fit_intercept:
            out[-1] = D.r_b * V[-1] + np.add.reduce(U, axis=0)
        return out

    # -- public ----------------------------------------------------------------------------------
    def solve(self, v: np.ndarray, *, rtol: float = SOLVE_RTOL, x0: np.ndarray | None = None,
              functionals: np.ndarray | None = None) -> np.ndarray:
        """``H⁻¹ v`` for a vector (or columns) laid out as ``[w, b]`` (or ``[w]``), to relative
        residual ``rtol`` (exact up to rounding with a factorisation at this curvature).

        ``functionals`` (same shape as v): conjugate gradients may also stop once each column's
        ``aᵀH⁻¹v`` (a its functional) and its energy norm are certified to relative
        :data:`CERTIFY_RTOL` (:func:`~._krylov.certified_stop`; only with the subset preconditioner,
        the one known to be ≤ H) — what the slope needs, at fewer iterations than ``rtol``."""
        v = np.asarray(v, dtype=np.float64)
        vector = v.ndim == 1
        V = v[:, None] if vector else v
        F = None if functionals is None else np.asarray(functionals, dtype=np.float64).reshape(V.shape)
        out = self._solve(V, rtol, None if x0 is None else np.reshape(np.asarray(x0, dtype=np.float64), V.shape), F)
        return out[:, 0] if vector else out

    def solve_with_rows(self, v: np.ndarray, X_rows: np.ndarray, q_rows: np.ndarray, *,
                        rtol: float = SOLVE_RTOL) -> np.ndarray:
        """``(H + Z_rᵀ diag(q_r) Z_r)⁻¹ v`` (``Z_r = [X_r, 1]``, ``q_r > 0``): the Hessian of the same
        objective with m more training rows (a quadratic loss: the model refitted with them is one
        Newton step away). On a factorisation at this curvature by Woodbury — one solve with the m rows
        as right-hand sides and an m×m Cholesky; otherwise by conjugate gradients on the updated matrix,
        preconditioned as H's solves are (P ≤ H ≤ the updated matrix), falling back to a factorisation."""
        v = np.asarray(v, dtype=np.float64)
        vector = v.ndim == 1
        V = v[:, None] if vector else v
        q_rows = np.asarray(q_rows, dtype=np.float64)
        Z = np.hstack([X_rows, np.ones((X_rows.shape[0], 1))]) if self.fit_intercept else np.asarray(X_rows)
        D = self._design
        factor = D.factor
        if factor is None or factor.q is not self.q:
            precondition = factor.solve if factor is not None else self._subset().solve

            def matmat(W: np.ndarray) -> np.ndarray:
                return self._matmat(W) + Z.T @ (q_rows[:, None] * (Z @ W))

            with one_blas_thread:
                result = block_pcg(matmat, V, precondition, rtol=rtol, maxiter=max(50, 4 * (self.d + 1)))
            D.iterations += result.iterations
            if result.converged:
                return result.x[:, 0] if vector else result.x
            factor = self._factorise(None)
        if isinstance(factor, _Primal):
            d, m = factor.L.shape[0], Z.shape[0]
            if m * d * d + d ** 3 / 3.0 < 2.0 * d * d * m + m * m * d + m ** 3 / 3.0:
                return self._solve_updated_primal(factor, V, Z, q_rows, vector)
        A = factor.solve(V)
        B = factor.solve(np.ascontiguousarray(Z.T))  # H⁻¹ Z_rᵀ
        S = Z @ B
        S[np.diag_indices_from(S)] += 1.0 / q_rows
        out = A - B @ _cho_solve(_cholesky(S, "the row update's capacitance matrix"), Z @ A)
        return out[:, 0] if vector else out

    def _solve_updated_primal(self, factor: "_Primal", V: np.ndarray, Z: np.ndarray, q_rows: np.ndarray,
                              vector: bool) -> np.ndarray:
        """More rows than the primal system has unknowns: factorise ``H + Z_rᵀ diag(q_r) Z_r`` itself
        (a syrk of the m rows and a Cholesky) instead of Woodbury's m×m system. The features are those
        some clean row or some added row uses (a trigger on pixels no clean image uses joins here, its
        block of H being r_w I); the others keep ``v_j / r_w``."""
        r_w = self._design.r_w
        d = Z.shape[1] - (1 if self.fit_intercept else 0)
        if factor.active is None:
            features, inner = np.arange(d), np.arange(d)
        else:
            features = np.union1d(factor.active, used_features(Z[:, :d]))
            inner = np.searchsorted(features, factor.active)  # the factor's features among them
        k = features.size
        if self.fit_intercept:
            features, inner = np.append(features, d), np.append(inner, k)
        H = np.zeros((features.size, features.size))
        H[np.diag_indices(k)] = r_w
        H[np.ix_(inner, inner)] = factor.H
        W = Z[:, features] * np.sqrt(q_rows)[:, None]
        H += W.T @ W
        L = _cholesky(H, "the primal Hessian with the added rows")
        out = V / r_w
        out[features] = _cho_solve(L, V[features])
        return out[:, 0] if vector else out

    def _solve(self, V: np.ndarray, rtol: float, x0: np.ndarray | None,
               functionals: np.ndarray | None = None) -> np.ndarray:
        D = self._design
        factor = D.factor
        if factor is not None and factor.q is self.q:
            D.methods.append(factor.name)
            return factor.solve(V)
        if self.space in ("primal", "dual"):
            return self._factorise(self.space).solve(V)
        factor_work = None if self.space == "cg" else self._cheaper_factorisation()[1] / self._speedup()
        iteration_work = V.shape[1] * (4.0 * self.n * self._d_used() + self._precondition_flops(factor))
        upfront = STALE_UPFRONT_ITERATIONS if factor is not None else \
            CONSTANT_UPFRONT_ITERATIONS if self._constant else UPFRONT_ITERATIONS
        if factor_work is not None and factor_work <= upfront * iteration_work:
            return self._factorise(None).solve(V)
        precondition = factor.solve if factor is not None else self._subset().solve
        if factor_work is not None:
            factor_work *= SWITCH_MARGIN
        best = [math.inf]

        def monitor(iteration: int, residual: float, initial: float, seconds: float) -> bool:
            """Switch when the remaining iterations — at the average rate at which the best residual so
            far fell — would cost more flops than the factorisation (``seconds`` is not used: the
            choice must not depend on the machine's load)."""
            best[0] = min(best[0], residual)  # CG residuals need not fall monotonically
            if factor_work is None or iteration < 5:
                return False
            if best[0] > 0.5 * initial:  # hardly any net progress: CG will not get there soon
                return iteration >= 8
            rate = (best[0] / initial) ** (1.0 / iteration)
            remaining = math.log(rtol / best[0]) / math.log(rate)
            return remaining * iteration_work > factor_work

        with one_blas_thread:
            certify = None if functionals is None or factor is not None else \
                certified_stop(functionals, V, precondition, rtol=CERTIFY_RTOL)
            result = block_pcg(self._matmat, V, precondition, rtol=rtol, x0=x0,
                               maxiter=max(50, 4 * (self.d + 1)), monitor=monitor, certify=certify)
        D.iterations += result.iterations
        D.methods.append("pcg")
        if result.converged:
            return result.x
        # the cost model (or a stalled recurrence) hands over to the cheaper factorisation here
        return self._factorise(None).solve(V)

    # -- preconditioners and factorisations --------------------------------------------------------
    def _subset(self) -> "_Subset":
        D = self._design
        if D.subset is None:
            D.subset = _Subset(D, self.q)
        elif D.subset.q is not self.q:  # the same points, re-weighted: one k×k Cholesky
            D.subset = D.subset.at(self.q)
        return D.subset

    def _precondition_flops(self, factor: "_Factor | None") -> float:
        """Flops of one preconditioner application to one column."""
        if factor is not None:
            n, d = factor.X.shape
            return 2.0 * d * d if factor.name == "primal-cholesky" else 4.0 * n * d + 2.0 * n * n
        k = self._design.subset_size
        return 4.0 * k * self.d + 2.0 * k * k

    def _d_used(self) -> int:
        """The number of features some training point uses (the factorisations work on those)."""
        return self._design.d_used

    def _speedup(self) -> float:
        """Factorisation flops per CG flop for this design (:data:`FACTOR_FLOP_SPEEDUP`, times
        :data:`STREAMED_SPEEDUP` when X does not fit in the cache): from the shape only."""
        streamed = 8.0 * self.n * self._d_used() > CACHED_DESIGN_BYTES
        return FACTOR_FLOP_SPEEDUP * (STREAMED_SPEEDUP if streamed else 1.0)

    def _cheaper_factorisation(self) -> tuple[str, float]:
        """The cheaper factorisation and its flops (d: the features some training point uses)."""
        D = self._design
        n, d = self.n, self._d_used()
        # constant curvature (ridge): XᵀX is data-only, computed once per training array and reused by
        # every later trial of a study — its cost is amortised, so it is not counted even the first time.
        # (X Xᵀ is data-only too, but amortising it for logistic regression on d = 9216 features made
        # every Newton step a dual factorisation, 115 ms each against 14 ms per CG iteration there.)
        inner = D.cache is not None and self._constant and d <= D.cache.max_primal_features
        outer = D.cache is not None and D.cache.has(D.X, "outer")
        primal = _factor_flops("primal", n, d, inner)
        dual = _factor_flops("dual", n, d, outer)
        return ("primal", primal) if primal <= dual else ("dual", dual)

    def _factorise(self, space: str | None) -> "_Factor":
        D = self._design
        space = space or self._cheaper_factorisation()[0]
        factor = _Factor.build(space, D, self.q, self._constant)
        D.factor = factor
        D.factorisations += 1
        D.methods.append(factor.name)
        return factor


class _Subset:
    """The curvature-subset preconditioner ``P ≤ H`` (Woodbury; see the module docstring).

    ``P = [[r_w I + Rᵀ Ω R, Xᵀq], [qᵀX, r_b + Σq]]`` with the rows R: the k points S of largest
    ``q_i ‖z_i‖²`` (weights ``q_S``) and the *centroid* of all other points, ``x̄ = Σ_{i∉S} q_i x_i / Q``
    with weight ``Q = Σ_{i∉S} q_i``. ``H − P = Σ_{i∉S} q_i (x_i − x̄)(x_i − x̄)ᵀ`` on the weights (a weighted
    covariance, zero on the intercept): P ≤ H, so ``rᵀP⁻¹r ≥ rᵀH⁻¹r`` (what :func:`certified_stop`
    relies on), and P shares H's intercept row exactly (an unpenalised intercept, r_b = 0, is solved
    by its Schur complement). Without an intercept, the same without its row and column.
    The points S are chosen at the first curvature; later curvatures (Newton steps) re-weight the
    same points and move the centroid: one product ``Xᵀq`` and a (k+1)×(k+1) Cholesky (``X_S X_Sᵀ`` is kept)."""

    def __init__(self, D: _Design, q: np.ndarray, index: np.ndarray | None = None,
                 gram: np.ndarray | None = None, XS: np.ndarray | None = None) -> None:
        self.D = D
        self.active, self.X = D.active()  # the used features (the others: H is r_w I there, P too)
        if index is None:
            weight = q * D.row_norms
            k = min(D.subset_size, int(np.count_nonzero(weight > 0)))
            index = np.zeros(0, dtype=np.intp) if k == 0 else \
                (np.argpartition(-weight, k - 1)[:k] if k < q.size else np.arange(q.size))
        self.index = index
        self._rows = np.empty((index.size + 1, self.X.shape[1]))  # X_S, then the centroid (set per curvature)
        self._rows[:-1] = self.X[index] if XS is None else XS
        self.XS = self._rows[:-1]
        self.gram = self.XS @ self.XS.T if gram is None else gram
        self._weigh(q)

    def at(self, q: np.ndarray) -> "_Subset":
        """The same points at another curvature."""
        return _Subset(self.D, q, self.index, self.gram, self.XS)

    def _weigh(self, q: np.ndarray) -> None:
        D = self.D
        self.q = q
        self.fit_intercept = D.fit_intercept
        self.r_w = D.r_w
        qS = q[self.index]
        keep = qS > 0  # points whose curvature vanished at this q leave the subset
        XS, gram, qS = (self.XS, self.gram, qS) if keep.all() else \
            (self.XS[keep], self.gram[np.ix_(keep, keep)], qS[keep])
        total = float(q.sum())
        c = self.X.T @ q  # Σ_i q_i x_i: P's intercept column, and the centroid's numerator
        rest = total - float(qS.sum())
        if rest > 1e-12 * total:
            centroid = (c - XS.T @ qS) / rest
            k = qS.size
            G = np.empty((k + 1, k + 1))
            G[:k, :k] = gram
            G[:k, k] = G[k, :k] = XS @ centroid
            G[k, k] = centroid @ centroid
            if keep.all():
                self._rows[-1] = centroid
                self.R = self._rows
            else:
                self.R = np.vstack([XS, centroid])
            omega = np.append(qS, rest)
        else:
            self.R, G, omega = XS, gram, qS
        M = G / self.r_w
        M[np.diag_indices_from(M)] += 1.0 / omega
        self.L = _dpotrf(M, lower=1, clean=1, overwrite_a=1)[0] if omega.size else None
        if self.fit_intercept:
            self.c = c
            self.Ac = self._solve_w(c[:, None])[:, 0]
            gamma = D.r_b + total
            self.schur = max(gamma - float(c @ self.Ac), 1e-12 * max(gamma, 1e-300))

    def _solve_w(self, V: np.ndarray) -> np.ndarray:
        """``(r_w I + Rᵀ Ω R)⁻¹ V`` on the used features, by Woodbury."""
        U = V * (1.0 / self.r_w)
        if self.L is not None:
            U -= (self.R.T @ _potrs(self.L, self.R @ U)) * (1.0 / self.r_w)
        return U

    def solve(self, V: np.ndarray) -> np.ndarray:
        W = V[:-1] if self.fit_intercept else V
        if self.active is None:
            out = np.empty_like(V)
            out_w = out[:-1] if self.fit_intercept else out
            U = self._solve_w(W)
        else:
            out = V * (1.0 / self.r_w)  # the unused features
            out_w = out[:-1] if self.fit_intercept else out
            U = self._solve_w(W[self.active])
        if self.fit_intercept:
            t = (V[-1] - self.c @ U) / self.schur
            U -= self.Ac[:, None] * t
            out[-1] = t
        if self.active is None:
            out_w[...] = U
        else:
            out_w[self.active] = U
        return out


class ClassBlockPreconditioner:
    """A preconditioner for a K-class Hessian whose class blocks are ``H_kk = diag(r) + Zᵀ diag(q_k) Z``
    (the multinomial's, :mod:`._multiclass`): block-diagonal, each block the curvature-subset
    preconditioner of its class's curvature (:class:`_Subset`: P_k ≤ H_kk; the class couplings are
    left out). Vectors are class-major, each class laid out ``[w, b]`` (or ``[w]``). The rows kept are
    chosen at the first curvature (per class) and re-weighted at later ones (:meth:`at`)."""

    def __init__(self, X: np.ndarray, *, r_w: float, r_b: float, fit_intercept: bool) -> None:
        n = X.shape[0]
        self._design = _Design(X=X, fit_intercept=fit_intercept, r_w=float(r_w), r_b=float(r_b), cache=None,
                               subset_size=min(n, max(32, int(6 * math.sqrt(n)))))
        self._blocks: list[_Subset] = []

    def at(self, Q: np.ndarray) -> "ClassBlockPreconditioner":
        """The preconditioner at curvatures ``Q`` (n × K: q_ik ≥ 0, class k's curvature of row i)."""
        columns = [np.ascontiguousarray(Q[:, k]) for k in range(Q.shape[1])]
        self._blocks = [_Subset(self._design, q) for q in columns] if len(self._blocks) != len(columns) \
            else [block.at(q) for block, q in zip(self._blocks, columns)]
        return self

    def solve(self, V: np.ndarray) -> np.ndarray:
        """``P⁻¹ V`` for columns V of the class-major vector."""
        size = V.shape[0] // len(self._blocks)
        out = np.empty_like(V)
        for k, block in enumerate(self._blocks):
            out[k * size:(k + 1) * size] = block.solve(V[k * size:(k + 1) * size])
        return out


class _Factor:
    """An exact factorisation of H at curvature ``q`` (primal Cholesky, or dual Woodbury), on the
    features some training point uses; the others are solved by ``v_j / r_w``."""

    def __init__(self, name: str, D: _Design, q: np.ndarray, flops: float) -> None:
        self.name = name
        self.q = q
        self.flops = flops
        self.r_w = D.r_w
        self.fit_intercept = D.fit_intercept
        self.active, self.X = D.active()

    @staticmethod
    def build(space: str, D: _Design, q: np.ndarray, constant: bool) -> "_Factor":
        return _Primal(D, q, constant) if space == "primal" else _Dual(D, q)

    def solve(self, V: np.ndarray) -> np.ndarray:
        if self.active is None:
            return self._solve_active(V)
        index = np.append(self.active, V.shape[0] - 1) if self.fit_intercept else self.active
        out = V / self.r_w  # the features no training point touches
        out[index] = self._solve_active(V[index])
        return out

    def _solve_active(self, V: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class _Primal(_Factor):
    def __init__(self, D: _Design, q: np.ndarray, constant: bool) -> None:
        super().__init__("primal-cholesky", D, q, 0.0)
        n, d = self.X.shape
        gram = D.cache.inner(D.X) if D.cache is not None and constant else None
        self.flops = _factor_flops("primal", n, d, gram is not None)
        if gram is not None:  # constant curvature: Xᵀ diag(q) X = q₀ Xᵀ X
            if self.active is not None:
                gram = gram[np.ix_(self.active, self.active)]
            G = gram * q[0]
        elif constant:  # one syrk of X itself, no scaled copy
            G = self.X.T @ self.X
            G *= q[0]
        else:
            G = _weighted_gram(self.X, q)
        G[np.diag_indices_from(G)] += D.r_w
        if D.fit_intercept:
            H = np.empty((d + 1, d + 1))
            H[:-1, :-1] = G
            H[:-1, -1] = H[-1, :-1] = self.X.T @ q
            H[-1, -1] = q.sum() + D.r_b
        else:
            H = G
        self.H = H  # kept for an update with more rows (LinearModelHessian.solve_with_rows)
        self.L = _cholesky(H, "the primal Hessian")

    def _solve_active(self, V: np.ndarray) -> np.ndarray:
        return _cho_solve(self.L, V)


class _Dual(_Factor):
    def __init__(self, D: _Design, q: np.ndarray) -> None:
        super().__init__("dual-cholesky", D, q, 0.0)
        n, d = self.X.shape
        cached = D.cache is not None
        self.flops = _factor_flops("dual", n, d, cached and D.cache.has(D.X, "outer"))
        self.r_b = D.r_b
        self.s = np.sqrt(q)
        if cached:  # X Xᵀ is the same with or without the all-zero columns
            M = D.cache.outer(D.X) * np.outer(self.s, self.s)
        else:
            W = self.X * self.s[:, None]
            M = W @ W.T  # syrk
        M[np.diag_indices_from(M)] += D.r_w
        self.L = _cholesky(M, "the dual (Woodbury) system r_w·I + S·X·Xᵀ·S")
        if D.fit_intercept:
            self.a = self.X.T @ q  # Xᵀ D 1
            self.a_solved = self._solve_A(self.a[:, None])[:, 0]
            schur = D.r_b + q.sum() - self.a @ self.a_solved
            if not schur > 1e-12 * max(1.0, q.sum()):
                raise SingularHessianError(_FLAT_INTERCEPT)
            self.schur = schur

    def _solve_A(self, V: np.ndarray) -> np.ndarray:
        """(r_w I + Xᵀ D X)⁻¹ V by Woodbury."""
        U = self.s[:, None] * (self.X @ V)
        U = _cho_solve(self.L, U)
        return (V - self.X.T @ (self.s[:, None] * U)) / self.r_w

    def _solve_active(self, V: np.ndarray) -> np.ndarray:
        if not self.fit_intercept:
            return self._solve_A(V)
        Ainv = self._solve_A(V[:-1])
        x_b = (V[-1] - self.a @ Ainv) / self.schur
        out = np.empty_like(V)
        out[:-1] = Ainv - self.a_solved[:, None] * x_b
        out[-1] = x_b
        return out


def _weighted_gram(X: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``Xᵀ diag(q) X`` (q ≥ 0) by numpy's syrk (half the flops of a general product) over row blocks
    of :data:`GRAM_BLOCK_BYTES`: the scaled copy is of one block, which stays in the cache, not of X."""
    n, d = X.shape
    s = np.sqrt(q)
    rows = max(1, GRAM_BLOCK_BYTES // (8 * max(d, 1)))
    if rows >= n:
        W = X * s[:, None]
        return W.T @ W
    G = np.zeros((d, d))
    W = np.empty((rows, d))
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        block = W[: stop - start]
        np.multiply(X[start:stop], s[start:stop, None], out=block)
        G += block.T @ block
    return G


def _cholesky(M: np.ndarray, what: str) -> np.ndarray:
    """Lower Cholesky factor by LAPACK's potrf (scipy's: 1.6–2× faster than numpy's wrapper at one
    thread for d = 550–1350; the factorisations run inside :data:`~._krylov.one_blas_thread`, where
    both libraries' pools are limited, so their threads do not contend)."""
    L, info = _dpotrf(M, lower=1, clean=1, overwrite_a=0)
    if info != 0:
        raise SingularHessianError(
            f"{what} is not positive definite (LAPACK potrf info {info}); the clean solution has a singular "
            "Hessian — pass damping > 0 (documented in docs/slope.md) or strengthen the regularisation"
        )
    return L


def _potrs(L: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``(L Lᵀ)⁻¹ V`` with LAPACK's potrs (little call overhead: it runs every CG iteration)."""
    out, info = _dpotrs(L, V, lower=1)
    if info != 0:  # pragma: no cover - only for malformed input
        raise SingularHessianError(f"potrs failed (info={info})")
    return out


def _cho_solve(L: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``(L Lᵀ)⁻¹ V`` by two triangular solves."""
    Y = linalg.solve_triangular(L, V, lower=True, check_finite=False)
    return linalg.solve_triangular(L, Y, lower=True, trans="T", check_finite=False)
