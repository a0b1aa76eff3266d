"""``SVC`` with K ≥ 3 classes: libsvm's K(K−1)/2 one-vs-one machines, refined together.

Machine p = (i, j), i < j, is trained on the rows of classes i and j only; class j is its +1 side, so
its decision value is −libsvm's. Each is the binary problem of :class:`~._svc.SVCSlope` (same dual,
same sets N / B / S, same active-set refinement, same tolerances), and the slope of each is that
class's KKT derivative; poison of class i or j enters only machine (i, j). Curve loss = for each
triggered point, the hinge of each of the K − 1 machines involving its target, the target as the
positive side, summed; averaged over the triggered points. Margin = the smallest decision value of
the target's K − 1 duels (target positive): positive ⇔ the target wins every duel, hence the vote.

**Batched refinement.** The machines' α live in one flat array, machine by machine (read from the
fitted estimator's ``dual_coef_``), with one intercept each. Every machine's margins come from one set
of kernel products, class by class (a row of class c lies in c's K − 1 machines only,
:class:`_MachineProducts`): through the machines' weight vectors (linear kernel), or from one block per
class c holding ``K(X_c, x_j)`` for the support vectors of the machines involving c (RBF; the only
kernel entries the margins need, each computed once; freed after fitting). The equalities on the margin
support vectors of all machines are solved as stacks of zero-padded KKT systems, machines of similar
size together (a padded unknown has the row ``1 · x = 0``, so it decouples; ``K(X_S, X_S)`` read from
the RBF blocks); set corrections repeat for the machines that moved. libsvm's own KKT residual
(``residual_fit``) comes from the first check's products. A machine whose system is singular or inexact
(relative residual > ``BATCH_RESIDUAL``), which has no margin support vector, or whose sets do not
settle — and every machine when the RBF blocks would exceed ``BLOCK_LIMIT`` — is refined on its own by
:class:`~._svc.SVCSlope` (least squares, the degenerate case, the tighter refit), exactly as without
batching.

**Derivative.** The target's K − 1 machines are differentiated as stacks too (:meth:`OneVsOneSVC._batched`,
the binary :meth:`SVCSlope._solve_attacks` for all of them at once), on the ``Q_SS`` each machine's
last solve used (kept per machine, the final margin set's); machines refined on their own, a
moving scaler and balanced class weights go machine by machine through ``SVCSlope`` objects, which are
built from the refined solution when first needed (also for per-point influences).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from robust_hpo.slope._base import Attack, AttackSolution, ConvexSlopeModel, MulticlassPart, hinge_active

BLOCK_LIMIT = 2 ** 25
"""RBF: the class blocks hold at most n · n_sv kernel entries (n_sv: libsvm's support vectors); above this
many (256 MiB) every machine is refined on its own instead, one machine's kernel columns at a time."""

BATCH_RESIDUAL = 1e-8
"""A batched KKT solve with a larger relative residual is redone for its machine alone (LU, then
least squares) — the binary solver's own threshold for falling back from LU."""


class OneVsOneSVC(MulticlassPart):
    """The one-vs-one machines of a fitted ``SVC`` (see the module docstring); ``machine_class`` is
    :class:`~._svc.SVCSlope` (passed in: this module does not import ``_svc``).

    The machines' variables are held flat, machine by machine (``seg[p]:seg[p+1]`` are machine p's
    entries): training row ``r``, machine ``mach``, label ``y`` (±1, class j positive), box ``C`` and
    α, and the sets S, B (N the rest)."""

    loss_name = "hinge (one-vs-one, summed over the target's duels)"

    def __init__(self, machine_class: type) -> None:
        self.machine_class = machine_class

    # -- refinement --------------------------------------------------------------------------------
    def prepare(self, model: ConvexSlopeModel, X: np.ndarray, codes: np.ndarray) -> dict[str, Any]:
        est = model.estimator_
        K = model.n_classes_
        self.K, self.model, self.X, self.codes = K, model, X, codes
        self.pairs = list(itertools.combinations(range(K), 2))
        P = len(self.pairs)
        self.sign = np.zeros((K, P))
        pair_index = np.full((K, K), -1)
        for p, (i, j) in enumerate(self.pairs):
            self.sign[i, p], self.sign[j, p] = -1.0, 1.0
            pair_index[i, j] = pair_index[j, i] = p
        self.duels = np.sort(np.where(np.eye(K, dtype=bool), P, pair_index), axis=1)[:, :-1]  # class -> its machines
        self.duel_sign = np.take_along_axis(self.sign, self.duels, axis=1)
        member = np.flatnonzero((self.sign.T != 0)[:, codes])  # P × n: machine by machine, rows ascending
        self.mach, self.r = np.divmod(member, codes.size)  # (libsvm's order)
        self.seg = np.concatenate([[0], np.cumsum(np.bincount(self.mach, minlength=P))])
        self.y = self.sign[codes[self.r], self.mach]
        weights = model.clean_weights()
        self.C_scalar = float(est.C)
        self.C = self.C_scalar * (np.ones(self.r.size) if weights is None else weights[self.r])
        alpha = self._libsvm_alpha(est, codes, pair_index).ravel()[self.r * P + self.mach]
        b = -np.asarray(est.intercept_, dtype=np.float64)
        self.linear = est.kernel == "linear"
        self._gram: dict[int, np.ndarray] = {}  # machine -> its last solve's Q_SS (the derivative's)
        self._norms = None if self.linear else self._norms_of(X)
        B = (alpha >= self.C * (1.0 - self.machine_class.bound_rtol)) & (self.C > 0)
        S = (alpha > 0) & ~B
        alpha[B] = self.C[B]
        fitted = (alpha.copy(), b.copy())  # libsvm's solution: its violation comes with the first check
        before = np.zeros(P)
        residual = np.zeros(P)
        steps = np.zeros(P, dtype=int)
        self.own: dict[int, Any] = {}  # machines refined on their own (see the module docstring)
        has_margin = np.logical_or.reduceat(S, self.seg[:-1])
        self._blocks = None
        if not self.linear and X.shape[0] * len(est.support_) > BLOCK_LIMIT:
            has_margin[:] = False  # the kernel blocks would be too large: machine by machine
        elif has_margin.any():
            self._blocks = _MachineProducts(self, alpha > 0)
        for p in np.flatnonzero(~has_margin):
            self._refine_alone(int(p), alpha, b, S, B)
            before[p] = 0.0
        active = np.flatnonzero(has_margin)
        while active.size:
            solved = self._solve_equalities(active, alpha, b, S, B)
            for p in np.setdiff1d(active, solved):
                self._refine_alone(int(p), alpha, b, S, B)
                before[p] = steps[p] = 0
            if not solved.size:
                break
            violation, low, high, enter, entries, of_fit = self._violations(alpha, b, S, B, solved, fitted)
            if fitted is not None:
                before[solved], fitted = of_fit, None
            change = low | high | enter
            moved = np.logical_or.reduceat(change, np.searchsorted(entries, self.seg[solved]))
            residual[solved[~moved]] = violation[~moved]
            at = entries[change]
            S_new = S.copy()
            S_new[at] = (S[at] & ~low[change] & ~high[change]) | enter[change]
            again = solved[moved]
            alone = (steps[again] >= self.machine_class.max_active_set_steps) | \
                ~np.logical_or.reduceat(S_new, self.seg[:-1])[again]
            B[at] = (B[at] & ~enter[change]) | high[change]
            S[:] = S_new
            alpha[entries[low]] = 0.0
            alpha[entries[high]] = self.C[entries[high]]
            steps[again] += 1
            for p in again[alone]:
                self._refine_alone(int(p), alpha, b, S, B)
                before[p] = steps[p] = 0
            active = again[~alone]
        self.alpha, self.b, self.S, self.B, self.steps = alpha, b, S, B, steps
        self._blocks = None  # the training kernel is not kept after fitting
        self._set_scores()
        self._machines: dict[int, Any] = dict(self.own)
        details: dict[str, Any] = {"method": "svm-kkt-ovo", "kernel": est.kernel, "n_classes": K, "machines": P,
                                   "n_margin_sv": int(S.sum()), "n_bound_sv": int(B.sum()),
                                   "active_set_steps": int(steps.sum()),
                                   "residual_fit": float(before.max()), "residual": float(residual.max())}
        for p, machine in sorted(self.own.items()):  # machines refined on their own: their own counts
            own = machine.details_
            for key in ("n_margin_sv", "n_bound_sv", "active_set_steps"):
                details[key] += own.get(key, 0)
            for key in ("residual_fit", "residual"):
                details[key] = max(details[key], own.get(key, 0.0))
            if own.get("degenerate"):
                details.setdefault("degenerate_machines", []).append(list(map(int, self.pairs[p])))
        return details

    @staticmethod
    def _norms_of(X: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", X, X)

    @staticmethod
    def _libsvm_alpha(est: Any, codes: np.ndarray, pair_index: np.ndarray) -> np.ndarray:
        """α (n × P) of libsvm's fit: a support vector of class c holds in row r of ``dual_coef_`` its
        coefficient in the machine against class r (r < c) or r + 1 (r ≥ c)."""
        K = pair_index.shape[0]
        alpha = np.zeros((codes.size, K * (K - 1) // 2))
        sv = np.asarray(est.support_)
        c = codes[sv]
        r = np.arange(K - 1)[:, None]
        other = r + (r >= c[None, :])
        alpha[np.broadcast_to(sv, other.shape), pair_index[c[None, :], other]] = np.abs(est.dual_coef_)
        return alpha

    def _entries(self, cols: np.ndarray) -> np.ndarray:
        """Flat entries of the machines ``cols`` (ascending machine order), machine by machine."""
        sizes = self.seg[cols + 1] - self.seg[cols]
        return np.repeat(self.seg[cols] - np.cumsum(sizes) + sizes, sizes) + np.arange(sizes.sum())

    def _products(self, values: np.ndarray, entries: np.ndarray, cols: np.ndarray,
                  at: np.ndarray) -> np.ndarray:
        """``Σ_l values_l K(x_at, x_{r_l})`` within each machine: ``values`` (a vector, or q columns) on
        flat ``entries`` of the machines ``cols``, evaluated at the flat entries ``at`` of the same machines."""
        if not np.any(values):
            return np.zeros((at.size,) + values.shape[1:])
        every = self.r.size
        if self.linear and (cols.size < len(self.pairs) or at.size < every):  # through the weight vectors
            q = 1 if values.ndim == 1 else values.shape[1]
            where = np.full(len(self.pairs), -1)
            where[cols] = np.arange(cols.size) * q
            V = values.reshape(values.shape[0], q)
            W = _weight_vectors(self.X, self.r[entries], where[self.mach[entries]] // q, V, cols.size)
            lanes = where[self.mach[at]]
            if at.size * 32 < self.X.shape[0] * cols.size * q:  # few values wanted: their rows only
                Xa, Wt = self.X[self.r[at]], np.ascontiguousarray(W.T)
                found = np.column_stack([np.einsum("ij,ij->i", Xa, Wt[lanes + j]) for j in range(q)])
            else:
                G = self.X @ W
                found = np.column_stack([G[self.r[at], lanes + j] for j in range(q)])
            return found.reshape((at.size,) + values.shape[1:])
        return self._blocks.products(values, entries, at)

    def _violations(self, alpha: np.ndarray, b: np.ndarray, S: np.ndarray, B: np.ndarray, cols: np.ndarray,
                    fitted: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[Any, ...]:
        """Per machine of ``cols`` (ascending): the largest KKT violation (as :meth:`SVCSlope._violation`:
        margin units, α's in units of C); on those machines' flat ``entries`` the entries leaving S to N
        (``low``) or to B (``high``) and entering S. ``fitted``: libsvm's (α, b) on the same sets, whose
        largest violation per machine comes last (from the same kernel products; else None)."""
        e = self._entries(cols)
        every = slice(None) if e.size == self.r.size else e  # every machine: views, not copies
        a, y, C, Se, Be = alpha[every], self.y[every], self.C[every], S[every], B[every]
        N = ~(Se | Be)
        starts = np.searchsorted(e, self.seg[cols])
        of_fit = None
        if fitted is None:
            yf = y * (self._products(a * y, e, cols, e) + b[self.mach[every]])
        else:
            a0 = fitted[0][every]
            both = self._products(np.column_stack([a * y, a0 * y]), e, cols, e)
            yf = y * (both[:, 0] + b[self.mach[every]])
            of_fit = self._worst(a0, y * (both[:, 1] + fitted[1][self.mach[every]]), C, Se, N, starts)
        violation = self._worst(a, yf, C, Se, N, starts)
        tol = self.machine_class.kkt_tol
        low, high = Se & (a <= 0), Se & (a >= C)
        enter = ((N & (yf < 1.0 - tol)) | (Be & (yf > 1.0 + tol))) & (C > 0)
        return violation, low, high, enter, e, of_fit

    @staticmethod
    def _worst(a: np.ndarray, yf: np.ndarray, C: np.ndarray, S: np.ndarray, N: np.ndarray,
               starts: np.ndarray) -> np.ndarray:
        """Largest violation per machine (segments from ``starts``): |y f − 1| and α outside [0, C] on S,
        1 − y f on N, y f − 1 on B."""
        d = yf - 1.0
        v = np.where(N, -d, d)
        s = np.flatnonzero(S)
        a_S, C_S = a[s], C[s]
        with np.errstate(divide="ignore", invalid="ignore"):
            v[s] = np.maximum(np.abs(d[s]), np.maximum(-a_S, a_S - C_S) / C_S)
        return np.maximum(np.maximum.reduceat(v, starts), 0.0)

    def _layout(self, cols: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The flat S entries of the machines ``cols`` (ascending), machine by machine, and each one's
        machine position k in ``cols`` and slot in its machine's system."""
        if cols.size == len(self.pairs):  # every machine: positions are the machines themselves
            at = np.flatnonzero(S)
            machine = self.mach[at]
        else:
            e = self._entries(cols)
            at = e[S[e]]
            machine = np.searchsorted(cols, self.mach[at])
        counts = np.bincount(machine, minlength=cols.size)
        slot = np.arange(at.size) - np.repeat(np.cumsum(counts) - counts, counts)
        return at, machine, slot

    def _stacked_solve(self, cols: np.ndarray, at: np.ndarray, machine: np.ndarray, slot: np.ndarray,
                       rhs_S: np.ndarray, rhs_eq: np.ndarray, damping: float = 0.0,
                       cached: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Solves the KKT systems ``[[Q_SS + damping I, y_S], [y_Sᵀ, 0]] (x_S, x_b) = (rhs_S, rhs_eq)`` of
        the machines ``cols`` (layout from :meth:`_layout`), as zero-padded stacks of machines of similar
        size (a padded unknown: ``1 · x = 0``, so it decouples). ``Q_SS = y_s y_t K(x_s, x_t)`` comes from
        ``X`` (linear), the class blocks (RBF, while refining), each kept per machine, or, with ``cached``,
        from each machine's last solve on the same S (the derivative's). Returns (x_S per entry, x_b per machine,
        which machines' solves are exact)."""
        counts = np.bincount(machine, minlength=cols.size)
        first = np.cumsum(counts) - counts
        x_S, x_b, ok = np.zeros(at.size), np.zeros(cols.size), np.zeros(cols.size, dtype=bool)
        for ks in _size_buckets(counts):
            sizes = counts[ks]
            m = int(sizes.max())
            mine = np.repeat(first[ks] - np.cumsum(sizes) + sizes, sizes) + np.arange(sizes.sum())
            kb, sb = np.repeat(np.arange(ks.size), sizes), slot[mine]  # machine in bucket, slot
            yS = np.zeros((ks.size, m))
            yS[kb, sb] = self.y[at[mine]]
            kkt = np.zeros((ks.size, m + 1, m + 1))
            Q = kkt[:, :m, :m]
            if cached:
                for k, p in enumerate(cols[ks]):
                    Q[k, :sizes[k], :sizes[k]] = self._gram[int(p)]
            else:
                rows = self.r[at[mine]]
                idx = np.repeat(rows[np.cumsum(sizes) - sizes][:, None], m, axis=1)
                idx[kb, sb] = rows  # pads repeat the machine's first row
                if self._blocks is None or self.linear or not self._blocks.gram(idx, out=Q):
                    Q[...] = self._gram_of(idx)
                Q *= yS[:, :, None]  # Q_SS = y_s y_t K(x_s, x_t); pads: zero rows and columns
                Q *= yS[:, None, :]
                for k, p in enumerate(cols[ks]):
                    self._gram[int(p)] = Q[k, :sizes[k], :sizes[k]]  # (kkt is not changed below)
            kkt[:, :m, m] = kkt[:, m, :m] = yS
            if damping:
                kkt[kb, sb, sb] += damping
            pad_k, pad_s = np.nonzero(yS == 0)
            kkt[pad_k, pad_s, pad_s] = 1.0
            rhs = np.zeros((ks.size, m + 1))
            rhs[kb, sb] = rhs_S[mine]
            rhs[:, m] = rhs_eq[ks]
            sol, good = self._solve_stack(kkt, rhs)
            x_S[mine], x_b[ks], ok[ks] = sol[kb, sb], sol[:, m], good
        return x_S, x_b, ok

    def _gram_of(self, idx: np.ndarray) -> np.ndarray:
        """``K(x_{idx[k, s]}, x_{idx[k, t]})`` (k × m × m), as :meth:`SVCSlope.kernel`."""
        XS = self.X[idx]
        Q = XS @ XS.transpose(0, 2, 1)
        if not self.linear:  # exp(−γ‖a − b‖²)
            gamma = float(self.model.estimator_.gamma)
            sq = self._norms[idx] * gamma
            Q *= 2.0 * gamma
            Q -= sq[:, :, None]
            Q -= sq[:, None, :]
            np.minimum(Q, 0.0, out=Q)
            np.exp(Q, out=Q)
        return Q

    def _kernel(self, rows: np.ndarray, cols: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``K(X[rows], X[cols])`` (RBF), by :func:`_rbf` (in ``out`` when given, C-contiguous)."""
        gamma = float(self.model.estimator_.gamma)
        return _rbf(self.X[rows], self.X[cols], gamma, self._norms[rows], self._norms[cols], out)

    @staticmethod
    def _solve_stack(kkt: np.ndarray, rhs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Solutions of a stack of systems and which are exact (relative residual ≤ BATCH_RESIDUAL)."""
        try:
            with np.errstate(all="ignore"):
                sol = np.linalg.solve(kkt, rhs[..., None])[..., 0]
                res = np.linalg.norm(np.matmul(kkt, sol[..., None])[..., 0] - rhs, axis=1)
                ok = np.isfinite(res) & (res <= BATCH_RESIDUAL * np.maximum(np.linalg.norm(rhs, axis=1), 1e-300))
        except np.linalg.LinAlgError:  # an exactly singular system: none is trusted
            return np.zeros_like(rhs), np.zeros(rhs.shape[0], dtype=bool)
        return sol, ok

    def _solve_equalities(self, cols: np.ndarray, alpha: np.ndarray, b: np.ndarray, S: np.ndarray,
                          B: np.ndarray) -> np.ndarray:
        """α_S and b of the machines ``cols`` from ``Q_SS α_S + y_S b = 1 − C Q_SB 1``, ``y_Sᵀ α_S =
        −C y_Bᵀ 1`` (stacks of systems), written into ``alpha`` and ``b``; returns the machines solved
        (the others are left to :meth:`_refine_alone`)."""
        at, machine, slot = self._layout(cols, S)
        if cols.size == len(self.pairs):
            bound = np.flatnonzero(B)
        else:
            e = self._entries(cols)
            bound = e[B[e]]
        cB = self.C[bound] * self.y[bound]  # α y of the bound support vectors
        fB = self._products(cB, bound, cols, at) if bound.size else np.zeros(at.size)
        eq = -np.bincount(np.searchsorted(cols, self.mach[bound]), weights=cB, minlength=cols.size)
        x_S, x_b, ok = self._stacked_solve(cols, at, machine, slot, 1.0 - self.y[at] * fB, eq)
        keep = ok[machine]
        alpha[at[keep]] = x_S[keep]
        b[cols[ok]] = x_b[ok]
        return cols[ok]

    def _new_machine(self, p: int) -> Any:
        """Machine p as a binary :class:`~._svc.SVCSlope` on a view of the estimator (libsvm's α and b
        for that pair), not yet refined. Returns (machine, its rows, their ±1 labels)."""
        model, est = self.model, self.model.estimator_
        i, j = self.pairs[p]
        rows = self.r[self.seg[p]:self.seg[p + 1]]
        starts = np.concatenate([[0], np.cumsum(est.n_support_)])
        view = copy.copy(est)  # a cheap view: its fitted attributes are replaced, not mutated
        sv_i = est.support_[starts[i]:starts[i + 1]]
        sv_j = est.support_[starts[j]:starts[j + 1]]
        coef = np.concatenate([est.dual_coef_[j - 1, starts[i]:starts[i + 1]],
                               est.dual_coef_[i, starts[j]:starts[j + 1]]])
        view.support_ = np.searchsorted(rows, np.concatenate([sv_i, sv_j]))
        view.dual_coef_ = coef[None, :]
        view.intercept_ = np.array([-float(est.intercept_[p])])
        machine = self.machine_class(model.estimator, damping=model.damping)
        machine.classes_ = model.classes_[[i, j]]
        machine.n_features_, machine.n_clean_ = self.X.shape[1], rows.size
        machine._multi, machine._memo = None, None
        machine.weights_ = model.weights_.subset(rows)
        machine.estimator_ = view
        machine._view = True  # its refined solution is not written back into the view
        machine.fit_seconds_ = machine.prepare_seconds_ = 0.0
        return machine, rows, self.y[self.seg[p]:self.seg[p + 1]]

    def _refine_alone(self, p: int, alpha: np.ndarray, b: np.ndarray, S: np.ndarray, B: np.ndarray) -> None:
        """Machine p refined by the binary solver from libsvm's solution; its α and b replace machine p's
        (its sets, counts and residuals stay in the machine: its entries of S and B are cleared)."""
        machine, rows, y = self._new_machine(p)
        machine.details_ = machine._prepare(self.X[rows], y)
        self.own[p] = machine
        mine = slice(self.seg[p], self.seg[p + 1])
        alpha[mine] = 0.0
        alpha[self.seg[p] + machine._sv_index] = np.abs(machine._coef_sv)
        b[p] = machine._b
        S[mine] = B[mine] = False

    def machine(self, p: int) -> Any:
        """Machine p as a refined binary :class:`~._svc.SVCSlope` (built on first use)."""
        found = self._machines.get(p)
        if found is None:
            found, rows, y = self._new_machine(p)
            mine = slice(self.seg[p], self.seg[p + 1])
            found.details_ = {"method": "svm-kkt", "kernel": self.model.estimator_.kernel,
                              "n_margin_sv": int(self.S[mine].sum()), "n_bound_sv": int(self.B[mine].sum()),
                              "active_set_steps": int(self.steps[p])}
            found._install(self.X[rows], y, self.alpha[mine], float(self.b[p]), self.S[mine], self.B[mine])
            self._machines[p] = found
        return found

    # -- scores and the conventions ------------------------------------------------------------------
    def _set_scores(self) -> None:
        """The refined machines' decision functions: ``X W + b`` (linear) or ``K(X, X_sv) A + b``."""
        coef = np.zeros((self.X.shape[0], len(self.pairs)))
        coef[self.r, self.mach] = self.alpha * self.y
        used = np.zeros(self.X.shape[0], dtype=bool)
        used[self.r[self.alpha != 0]] = True
        sv = np.flatnonzero(used)
        self._sv, self._coef_sv = sv, coef[sv]
        self._W = self.X[sv].T @ self._coef_sv if self.linear else None

    def scores(self, X: np.ndarray) -> np.ndarray:
        if self._W is not None:
            return X @ self._W + self.b
        return self.model._kernel_dot(X, self.X[self._sv], self._coef_sv) + self.b

    def scores_of(self, estimator: Any, X: np.ndarray) -> np.ndarray:
        return -_ovo_decision(estimator, X)

    def predict_from(self, F: np.ndarray) -> np.ndarray:
        votes = np.zeros((F.shape[0], self.K))
        for p, (i, j) in enumerate(self.pairs):
            wins_j = F[:, p] >= 0  # libsvm: its decision value > 0 votes for i, otherwise j
            votes[:, j] += wins_j
            votes[:, i] += ~wins_j
        return np.argmax(votes, axis=1)

    def margins_from(self, F: np.ndarray, codes: np.ndarray) -> np.ndarray:
        return self._duels(F, codes)[0]

    def _duels(self, F: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(smallest oriented duel value, its machine) per row: the target's duels only."""
        machines = self.duels[codes]
        oriented = np.take_along_axis(F, machines, axis=1) * self.duel_sign[codes]
        k = np.argmin(oriented, axis=1)  # ties: the first machine, as over all columns
        rows = np.arange(F.shape[0])
        return oriented[rows, k], machines[rows, k]

    def loss_from(self, F: np.ndarray, codes: np.ndarray) -> np.ndarray:
        S = self.sign[codes]
        return np.sum(np.where(S != 0, np.maximum(0.0, 1.0 - S * F), 0.0), axis=1)

    # -- derivatives ---------------------------------------------------------------------------------
    def solve(self, attacks: Sequence[Attack]) -> list[AttackSolution]:
        return [self._solve_one(a) for a in attacks]

    def _solve_one(self, a: Attack) -> AttackSolution:
        """dL/dβ and the margins' derivative: the machines of the triggered points' targets, all at once
        (:meth:`_batched`) where nothing else moves; a moving scaler or class weights, machines refined
        on their own and inexact batched solves go machine by machine through :class:`~._svc.SVCSlope`."""
        n_t = a.X_trigger.shape[0]
        P = len(self.pairs)
        F, dF = np.zeros((n_t, P)), np.zeros((n_t, P))
        cols = np.flatnonzero(np.any(self.sign[np.unique(a.t_trigger)] != 0, axis=0))
        still = (a.motion is None or not np.any(a.motion.rho)) and a.class_motion is None
        fast = np.array([p for p in cols if p not in self.own], dtype=int) if still else np.zeros(0, dtype=int)
        value, entering, done = 0.0, 0, np.zeros(0, dtype=int)
        if fast.size:
            value, entering, done = self._batched(a, fast, F, dF)
        exact = True
        for p in np.setdiff1d(cols, done):
            i, j = self.pairs[p]
            tr = np.flatnonzero((a.t_trigger == i) | (a.t_trigger == j))
            po = np.flatnonzero((a.t_poison == i) | (a.t_poison == j))
            machine = self.machine(int(p))
            sub = Attack(a.X_poison[po], np.where(a.t_poison[po] == j, 1.0, -1.0),
                         a.X_trigger[tr], np.where(a.t_trigger[tr] == j, 1.0, -1.0), a.motion,
                         None if a.weight is None else a.weight[po], a.class_motion)
            if po.size == 0 and still:
                F[tr, p] = machine.decision_function(sub.X_trigger)
                continue
            solution = machine._solve_attacks([sub])[0]
            F[tr, p], dF[tr, p] = solution.f_trigger, solution.df_trigger
            value += solution.derivative * tr.size / n_t
            exact = exact and solution.exact
            entering += solution.details.get("n_poison_entering", 0)
        margin, k = self._duels(F, a.t_trigger)
        rows = np.arange(n_t)
        return AttackSolution(value, margin, self.sign[a.t_trigger, k] * dF[rows, k],
                              {"n_poison_entering": entering}, exact=exact, oriented=True)

    def _batched(self, a: Attack, cols: np.ndarray, F: np.ndarray, dF: np.ndarray) -> tuple[float, int, np.ndarray]:
        """The machines ``cols`` (refined together, no moving scaler or class weights) at once, as
        :meth:`SVCSlope._solve_attacks` computes each: poison of the machine's classes with ``t f < 1``
        enters at ``α = C κ β``; one padded stack of KKT solves gives dα_S/dβ, db/dβ; the triggered
        points' ``df/dβ`` and the hinge's derivative where ``t f < 1``. Fills columns of ``F`` and
        ``dF``; returns (the machines' part of dL/dβ, entering poison, the machines done)."""
        n_t = a.X_trigger.shape[0]
        C = self.C_scalar
        sign = self.sign[:, cols]
        Sg_t, Sg_p = sign[a.t_trigger], sign[a.t_poison]
        weight = np.ones(a.X_poison.shape[0]) if a.weight is None else a.weight
        coef = self._coef_sv[:, cols]
        if self.linear:
            W = self._W[:, cols]
            Ft, Fp = a.X_trigger @ W + self.b[cols], a.X_poison @ W + self.b[cols]
        else:
            used = np.flatnonzero(np.any(coef != 0, axis=1))
            Xs, coef = self.X[self._sv[used]], coef[used]
            gamma, Xs_norms = float(self.model.estimator_.gamma), self._norms_of(Xs)
            Kp = _rbf_rows(a.X_poison, Xs, gamma, Xs_norms)
            Fp = Kp @ coef + self.b[cols]
            position = np.full(self.X.shape[0], -1)
            position[self._sv[used]] = np.arange(used.size)
        enter = (Sg_p != 0) & (Sg_p * Fp < 1.0)
        V = np.where(enter, Sg_p * weight[:, None], 0.0)  # entering poison's α y per unit C β, per machine
        at, machine, slot = self._layout(cols, self.S)
        if self.linear:
            XS = self.X[self.r[at]]
            Uv = a.X_poison.T @ V
            KSv = np.einsum("ld,ld->l", XS, Uv.T[machine])  # K(x_s, X_poison) v of its machine
        else:
            KpS = Kp[:, position[self.r[at]]]
            KSv = np.einsum("pl,pl->l", KpS, V[:, machine])
        x_S, x_b, ok = self._stacked_solve(cols, at, machine, slot, -C * self.y[at] * KSv, -C * V.sum(axis=0),
                                           self.model.damping, cached=True)
        d_coef = self.y[at] * x_S  # dα_S y_S
        if self.linear:
            M = np.zeros((at.size, cols.size))
            M[np.arange(at.size), machine] = d_coef
            DF = a.X_trigger @ (XS.T @ M + C * Uv) + x_b
        else:
            entering = np.flatnonzero(enter.any(axis=1))
            # [f − b, df − db] at the triggered points: K(X_trigger, [SV; entering poison]) times
            # [[α y, dα y], [0, C v]] (a row's entries in different machines: no clash)
            coefs = np.zeros((used.size + entering.size, 2 * cols.size))
            coefs[:used.size, :cols.size] = coef
            coefs[position[self.r[at]], cols.size + machine] = d_coef
            coefs[used.size:, cols.size:] = C * V[entering]
            columns = np.vstack([Xs, a.X_poison[entering]])
            both = _rbf_rows(a.X_trigger, columns, gamma, self._norms_of(columns)) @ coefs
            Ft, DF = both[:, :cols.size] + self.b[cols], both[:, cols.size:] + x_b
        active = (Sg_t != 0) & hinge_active(Sg_t * Ft, Sg_t * DF) & ok  # a kink: as SVCSlope
        F[:, cols[ok]], dF[:, cols[ok]] = Ft[:, ok], DF[:, ok]
        value = -float(np.sum(np.where(active, Sg_t * DF, 0.0))) / n_t
        return value, int(enter[:, ok].sum()), cols[ok]

    def point_influences(self, X: np.ndarray, codes: np.ndarray, X_test: np.ndarray, test_codes: np.ndarray, *,
                         in_fit: bool, quantity: str = "loss") -> np.ndarray:
        """Summed over the machines: machine (i, j) sees the training rows of classes i and j (its own
        fit, in order, when ``in_fit``) and the test rows whose target is i or j (``"margin"``: the rows
        whose smallest duel it is), each as the binary :meth:`SVCSlope.point_influences` (j positive)
        weighted by its share of the test rows."""
        n_t = X_test.shape[0]
        out = np.zeros(X.shape[0])
        active = self._duels(self.scores(X_test), test_codes)[1] if quantity == "margin" else None
        for p, (i, j) in enumerate(self.pairs):
            tests = (test_codes == i) | (test_codes == j) if active is None else active == p
            rows = np.flatnonzero((codes == i) | (codes == j))
            if not tests.any() or rows.size == 0:
                continue
            out[rows] += tests.sum() / n_t * self.machine(p).point_influences(
                X[rows], np.where(codes[rows] == j, 1.0, -1.0), X_test[tests],
                np.where(test_codes[tests] == j, 1.0, -1.0), in_fit=in_fit, quantity=quantity)
        return out


class _MachineProducts:
    """``Σ_l v_l K(x_r, x_{r_l})`` within each machine, at every flat entry (r, p) of the one-vs-one
    machines (``v`` on the flat entries): the products the margins and the KKT right-hand sides need.

    Rows are taken class by class: a row of class c lies in c's K − 1 machines (its duels) and in no
    other, so its values come from one product of (the rows of c) × (c's columns) by (c's columns) ×
    (its duels). Linear: the columns are the features and the duels' weight vectors ``Σ v x`` are
    formed once per call. RBF: block c holds ``K(X_c, x_j)`` for the columns j its duels use —
    libsvm's support vectors at construction, more as the active set grows (each computed once) —
    the kernel entries the margins need, and no others. The blocks are consecutive in one flat array
    (until one grows), from which the KKT systems' ``K(X_S, X_S)`` are read (:meth:`gram`)."""

    def __init__(self, part: "OneVsOneSVC", support: np.ndarray) -> None:
        K, P, X, codes = part.K, len(part.pairs), part.X, part.codes
        self.part, self.K, self.P = part, K, P
        self.order = np.argsort(codes, kind="stable")  # rows by class
        self.start = np.searchsorted(codes[self.order], np.arange(K + 1))
        sorted_row = np.empty(X.shape[0], dtype=np.intp)
        sorted_row[self.order] = np.arange(X.shape[0])
        duel_slot = np.full((K, P), -1)
        for c in range(K):
            duel_slot[c, part.duels[c]] = np.arange(K - 1)
        pairs = np.array(part.pairs)
        r, mach = part.r, part.mach
        slots = duel_slot.ravel()
        self.out_at = sorted_row[r] * (K - 1) + slots[codes[r] * P + mach]  # an entry's value in the output
        if part.linear:
            return
        self.sides = []  # where an entry's coefficient goes: the blocks of its machine's two classes
        for side in (0, 1):
            cls = pairs[:, side][mach]
            self.sides.append((cls, slots[cls * P + mach]))
        self.position = np.full((K, X.shape[0]), -1)  # column j's place in block c
        self.width = np.zeros(K, dtype=np.intp)
        used = np.zeros((K, X.shape[0]), dtype=bool)  # libsvm's support vectors of the machines involving c
        for cls, _ in self.sides:
            used[cls[support], r[support]] = True
        columns = [np.flatnonzero(u) for u in used]
        sizes = np.diff(self.start) * np.array([c.size for c in columns])
        self.offset = np.concatenate([[0], np.cumsum(sizes)])  # block c: flat[offset[c]:offset[c + 1]]
        self.flat: np.ndarray | None = np.empty(self.offset[-1])
        self.blocks: list[np.ndarray] = []
        for c in range(K):
            rows_c = self.order[self.start[c]:self.start[c + 1]]
            block = self.flat[self.offset[c]:self.offset[c + 1]].reshape(rows_c.size, columns[c].size)
            self.part._kernel(rows_c, columns[c], out=block)
            self.blocks.append(block)
            self.position[c, columns[c]] = np.arange(columns[c].size)
            self.width[c] = columns[c].size
        self.sorted_row = sorted_row

    def _add(self, c: int, cols: np.ndarray) -> None:
        """Columns ``cols`` (training rows, not yet in block c) appended to block c."""
        new = self.part._kernel(self.order[self.start[c]:self.start[c + 1]], cols)
        self.blocks[c] = np.hstack([self.blocks[c], new])
        self.flat = None  # the blocks no longer share one array
        self.position[c, cols] = self.width[c] + np.arange(cols.size)
        self.width[c] += cols.size

    def products(self, values: np.ndarray, entries: np.ndarray, at: np.ndarray) -> np.ndarray:
        """The within-machine products at the flat entries ``at``, for ``values`` (a vector, or q columns)
        on the flat ``entries``."""
        K, P, r = self.K, self.P, self.part.r
        vector = values.ndim == 1
        V = values.reshape(values.shape[0], -1)
        q = V.shape[1]
        used = V[:, 0] != 0
        for j in range(1, q):
            used |= V[:, j] != 0
        keep = np.flatnonzero(used)
        nz, coefs = entries[keep], V[keep]  # the nonzero coefficients and their flat entries
        rows_nz = r[nz]
        out = np.empty((self.start[-1], (K - 1) * q))
        if self.part.linear:
            W = _weight_vectors(self.part.X, rows_nz, self.part.mach[nz], coefs, P)
            moving = np.zeros(P, dtype=bool)
            moving[self.part.mach[nz]] = True
            for c in range(K):
                lo, hi = self.start[c], self.start[c + 1]
                if moving[self.part.duels[c]].any():  # else none of c's machines has a coefficient
                    out[lo:hi] = self.part.X[self.order[lo:hi]] @ W[:, self.lanes(c, q)]
                else:
                    out[lo:hi] = 0.0
        else:
            for cls, _ in self.sides:  # columns not yet in their blocks
                missing = self.position[cls[nz], rows_nz] < 0
                for c in np.unique(cls[nz][missing]):
                    self._add(int(c), np.unique(rows_nz[missing & (cls[nz] == c)]))
            cls = np.concatenate([c[nz] for c, _ in self.sides])  # each coefficient in its two blocks
            where = np.concatenate([self.position[c[nz], rows_nz] * (K - 1) + slot[nz] for c, slot in self.sides])
            by_class = np.argsort(cls, kind="stable")
            bounds = np.searchsorted(cls[by_class], np.arange(K + 1))
            where, value = where[by_class], np.concatenate([coefs, coefs])[by_class]
            for c in range(K):
                lo, hi, w = self.start[c], self.start[c + 1], self.width[c]
                if bounds[c] == bounds[c + 1]:  # no coefficient in c's machines
                    out[lo:hi] = 0.0
                    continue
                full = np.zeros(w * (K - 1) * q)
                mine = where[bounds[c]:bounds[c + 1]] * q
                for j in range(q):
                    full[mine + j] = value[bounds[c]:bounds[c + 1], j]
                out[lo:hi] = self.blocks[c] @ full.reshape(w, (K - 1) * q)
        place, flat = self.out_at[at] * q, out.ravel()
        if vector:
            return flat.take(place)
        found = np.empty((at.size, q))
        for j in range(q):
            found[:, j] = flat.take(place + j)
        return found

    def gram(self, idx: np.ndarray, out: np.ndarray) -> bool:
        """``K(x_{idx[k, s]}, x_{idx[k, t]})`` (k × m × m, rows of one machine each) read from the blocks (RBF)
        into ``out``; False (``out`` untouched) where some entry is not in them."""
        if self.flat is None:
            return False
        n = self.position.shape[1]
        cls = self.part.codes[idx]
        column = self.position.ravel()[(cls * n)[:, :, None] + idx[:, None, :]]
        if column.min() < 0:
            return False
        base = self.offset[cls] + (self.sorted_row[idx] - self.start[cls]) * self.width[cls]
        column += base[:, :, None]  # in range by construction: a block's rows times its width
        np.take(self.flat, column, out=out, mode="clip")
        return True

    def lanes(self, c: int, q: int) -> np.ndarray:
        """Columns of the machines' weight vectors (q per machine) of class c's duels, in duel order."""
        return (self.part.duels[c][:, None] * q + np.arange(q)).ravel()


def _rbf(A: np.ndarray, B: np.ndarray, gamma: float, A_norms: np.ndarray, B_norms: np.ndarray,
         out: np.ndarray | None = None) -> np.ndarray:
    """``K(A, B) = exp(−γ‖a − b‖²)`` with the exponent as one product of the augmented rows ``[2γa, −γ‖a‖², 1]``
    and ``[b, 1, −γ‖b‖²]`` (the terms of :meth:`SVCSlope.kernel`), clipped at 0 and exponentiated in place
    (in ``out`` when given, C-contiguous)."""
    d = A.shape[1]
    left, right = np.empty((A.shape[0], d + 2)), np.empty((B.shape[0], d + 2))
    np.multiply(A, 2.0 * gamma, out=left[:, :d])
    left[:, d], left[:, d + 1] = -gamma * A_norms, 1.0
    right[:, :d] = B
    right[:, d], right[:, d + 1] = 1.0, -gamma * B_norms
    out = np.matmul(left, right.T, out=out)
    np.minimum(out, 0.0, out=out)
    return np.exp(out, out=out)


def _rbf_rows(A: np.ndarray, B: np.ndarray, gamma: float, B_norms: np.ndarray, block: int = 2048) -> np.ndarray:
    """``K(A, B)`` (:func:`_rbf`) in blocks of ``block`` rows of A (bounded temporaries for large A)."""
    out = np.empty((A.shape[0], B.shape[0]))
    for i in range(0, A.shape[0], block):
        rows = A[i:i + block]
        _rbf(rows, B, gamma, np.einsum("ij,ij->i", rows, rows), B_norms, out[i:i + block])
    return out


def _weight_vectors(X: np.ndarray, rows: np.ndarray, machines: np.ndarray, values: np.ndarray,
                    P: int) -> np.ndarray:
    """``W[:, p q + j] = Σ_l values[l, j] x_{rows_l}`` over the entries l of machine p (d × P q)."""
    q = values.shape[1]
    if P * q <= 8:  # few machines: over every row
        coef = np.zeros(X.shape[0] * P * q)
        place = (rows * P + machines) * q
        for j in range(q):
            coef[place + j] = values[:, j]
        return X.T @ coef.reshape(X.shape[0], P * q)
    used, at = np.unique(rows, return_inverse=True)  # the rows with a coefficient only
    coef = np.zeros(used.size * P * q)
    place = (at * P + machines) * q
    for j in range(q):
        coef[place + j] = values[:, j]
    return X[used].T @ coef.reshape(used.size, P * q)


BUCKET_OVERHEAD = 4e5
"""The fixed cost of one more stack of KKT solves, in units of one padded system's m³ (measured: about
as much as the LU work it saves when machines of ~25 margin SVs stop being padded to ~50)."""


def _size_buckets(counts: np.ndarray, ratio: float = 1.3) -> list[np.ndarray]:
    """Positions of ``counts`` (systems of size count + 1) grouped by size, ascending within each group:
    groups of sizes within ``ratio`` of their smallest, a group merged into the next larger one while
    padding it there costs less LU work (Σ m³) than a stack of its own (``BUCKET_OVERHEAD``)."""
    order = np.argsort(counts, kind="stable")
    if counts.size * (float(counts[order[-1]]) + 1) ** 3 - np.sum((counts + 1.0) ** 3) < BUCKET_OVERHEAD:
        return [np.arange(counts.size)]  # padding to the largest wastes less than another stack
    sizes = (counts[order] + 1).tolist()
    cuts = [0]
    for i in range(1, len(sizes)):
        if sizes[i] > ratio * sizes[cuts[-1]]:
            cuts.append(i)
    cuts.append(len(sizes))
    groups = [(cuts[g], cuts[g + 1]) for g in range(len(cuts) - 1)]
    merged: list[tuple[int, int]] = []
    for lo, hi in reversed(groups):  # from the largest sizes down
        if merged:
            top = sizes[merged[-1][1] - 1]
            if (hi - lo) * (top ** 3 - sizes[hi - 1] ** 3) < BUCKET_OVERHEAD:
                merged[-1] = (lo, merged[-1][1])
                continue
        merged.append((lo, hi))
    return [np.sort(order[lo:hi]) for lo, hi in reversed(merged)]


def _ovo_decision(estimator: Any, X: np.ndarray) -> np.ndarray:
    """libsvm's one-vs-one decision values of a fitted SVC (positive: the pair's first class)."""
    shape = estimator.decision_function_shape
    try:
        estimator.decision_function_shape = "ovo"
        return np.asarray(estimator.decision_function(X), dtype=np.float64)
    finally:
        estimator.decision_function_shape = shape
