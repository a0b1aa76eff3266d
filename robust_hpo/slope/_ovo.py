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
of kernel products: through the P weight vectors (linear kernel), or from one block per class c holding
``K(X_c, x_j)`` for the support vectors of the machines involving c (RBF; the only kernel entries the
margins need; freed after fitting). The equalities on the margin support vectors of all machines are
solved as one stack of zero-padded KKT systems (a padded unknown has the row ``1 · x = 0``, so it
decouples); set corrections repeat for the machines that moved. libsvm's own KKT residual
(``residual_fit``) comes from the first check's products. A machine whose system is singular or inexact
(relative residual > ``BATCH_RESIDUAL``), which has no margin support vector, or whose sets do not
settle — and every machine when the RBF blocks would exceed ``BLOCK_LIMIT`` — is refined on its own by
:class:`~._svc.SVCSlope` (least squares, the degenerate case, the tighter refit), exactly as without
batching.

**Derivative.** The target's K − 1 machines are differentiated as one stack too (:meth:`OneVsOneSVC._batched`,
the binary :meth:`SVCSlope._solve_attacks` for all of them at once); machines refined on their own, a
moving scaler and balanced class weights go machine by machine through ``SVCSlope`` objects, which are
built from the refined solution when first needed (also for per-point influences).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from robust_hpo.slope._base import Attack, AttackSolution, ConvexSlopeModel, MulticlassPart, on_the_kink

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
        member = self.sign[codes] != 0  # n × P
        self.mach, self.r = np.nonzero(member.T)  # machine by machine, rows ascending (libsvm's order)
        self.seg = np.concatenate([[0], np.cumsum(member.sum(axis=0))])
        self.y = self.sign[codes[self.r], self.mach]
        weights = model.clean_weights()
        self.C_scalar = float(est.C)
        self.C = self.C_scalar * (np.ones(self.r.size) if weights is None else weights[self.r])
        alpha = self._libsvm_alpha(est, codes, pair_index)[self.r, self.mach]
        b = -np.asarray(est.intercept_, dtype=np.float64)
        self.linear = est.kernel == "linear"
        self._blocks = None if self.linear else _ClassBlocks(model, X, codes, self.sign)
        B = (alpha >= self.C * (1.0 - self.machine_class.bound_rtol)) & (self.C > 0)
        S = (alpha > 0) & ~B
        alpha[B] = self.C[B]
        fitted = (alpha.copy(), b.copy())  # libsvm's solution: its violation comes with the first check
        before = np.zeros(P)
        residual = np.zeros(P)
        steps = np.zeros(P, dtype=int)
        self.own: dict[int, Any] = {}  # machines refined on their own (see the module docstring)
        has_margin = np.logical_or.reduceat(S, self.seg[:-1])
        if not self.linear and X.shape[0] * len(est.support_) > BLOCK_LIMIT:
            has_margin[:] = False  # the kernel blocks would be too large: machine by machine
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
        q = 1 if values.ndim == 1 else values.shape[1]
        if not np.any(values):
            return np.zeros((at.size, q) if values.ndim > 1 else at.size)
        where = np.full(len(self.pairs), -1)
        where[cols] = np.arange(cols.size) * q
        width = cols.size * q
        coef = np.zeros(self.X.shape[0] * width)
        place = self.r[entries] * width + where[self.mach[entries]]
        coef[place if q == 1 else place[:, None] + np.arange(q)] = values
        coef = coef.reshape(self.X.shape[0], width)
        place = where[self.mach[at]] if q == 1 else where[self.mach[at]][:, None] + np.arange(q)
        if self.linear and at.size * 32 < coef.size:  # few values wanted: rows times the weight vectors
            return np.einsum("ij,ij->i", self.X[self.r[at]], (self.X.T @ coef).T[place])
        G = self.X @ (self.X.T @ coef) if self.linear else self._blocks.dot(coef, np.repeat(cols, q))
        return G[self.r[at] if q == 1 else self.r[at][:, None], place]

    def _violations(self, alpha: np.ndarray, b: np.ndarray, S: np.ndarray, B: np.ndarray, cols: np.ndarray,
                    fitted: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[Any, ...]:
        """Per machine of ``cols`` (ascending): the largest KKT violation (as :meth:`SVCSlope._violation`:
        margin units, α's in units of C); on those machines' flat ``entries`` the entries leaving S to N
        (``low``) or to B (``high``) and entering S. ``fitted``: libsvm's (α, b) on the same sets, whose
        largest violation per machine comes last (from the same kernel products; else None)."""
        e = self._entries(cols)
        a, y, C, Se, Be = alpha[e], self.y[e], self.C[e], S[e], B[e]
        N = ~(Se | Be)
        starts = np.searchsorted(e, self.seg[cols])
        of_fit = None
        if fitted is None:
            yf = y * (self._products(a * y, e, cols, e) + b[self.mach[e]])
        else:
            a0 = fitted[0][e]
            both = self._products(np.column_stack([a * y, a0 * y]), e, cols, e)
            yf = y * (both[:, 0] + b[self.mach[e]])
            of_fit = self._worst(a0, y * (both[:, 1] + fitted[1][self.mach[e]]), C, Se, N, starts)
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
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(S, np.maximum(np.abs(yf - 1.0), np.maximum(np.maximum(0.0, -a), a - C) / C),
                         np.where(N, 1.0 - yf, yf - 1.0))
        return np.maximum(np.maximum.reduceat(v, starts), 0.0)

    def _kkt_stack(self, cols: np.ndarray, S: np.ndarray, damping: float = 0.0) -> tuple[np.ndarray, ...]:
        """The KKT matrices ``[[Q_SS, y_S], [y_Sᵀ, 0]]`` of the machines ``cols`` (ascending), zero-padded
        to one size (a padded unknown: ``1 · x = 0``). Returns (stack, the flat S entries, their machine
        position k in ``cols`` and slot in the system, y_S per slot)."""
        e = self._entries(cols)
        at = e[S[e]]
        machine = np.searchsorted(cols, self.mach[at])
        counts = np.bincount(machine, minlength=cols.size)
        m = int(counts.max())
        first = np.cumsum(counts) - counts
        slot = np.arange(at.size) - np.repeat(first, counts)
        rows = self.r[at]
        idx = np.repeat(rows[first][:, None], m, axis=1)  # pads repeat the machine's first row
        idx[machine, slot] = rows
        yS = np.zeros((cols.size, m))
        yS[machine, slot] = self.y[at]
        XS = self.X[idx]
        Q = XS @ XS.transpose(0, 2, 1)
        if not self.linear:  # exp(−γ‖a − b‖²), as SVCSlope.kernel
            gamma = float(self.model.estimator_.gamma)
            sq = np.einsum("kmd,kmd->km", XS, XS)
            Q *= 2.0 * gamma
            Q -= gamma * sq[:, :, None]
            Q -= gamma * sq[:, None, :]
            np.minimum(Q, 0.0, out=Q)
            np.exp(Q, out=Q)
        Q *= yS[:, :, None]
        Q *= yS[:, None, :]
        kkt = np.zeros((cols.size, m + 1, m + 1))
        kkt[:, :m, :m] = Q
        kkt[:, :m, m] = kkt[:, m, :m] = yS
        if damping:
            kkt[machine, slot, slot] += damping
        pad_machine, pad_slot = np.nonzero(yS == 0)
        kkt[pad_machine, pad_slot, pad_slot] = 1.0
        return kkt, at, machine, slot, yS

    @staticmethod
    def _solve_stack(kkt: np.ndarray, rhs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Solutions of a stack of systems and which are exact (relative residual ≤ BATCH_RESIDUAL)."""
        try:
            with np.errstate(all="ignore"):
                sol = np.linalg.solve(kkt, rhs[..., None])[..., 0]
                res = np.linalg.norm(np.einsum("kij,kj...->ki...", kkt, sol) - rhs, axis=1)
                ok = np.isfinite(res) & (res <= BATCH_RESIDUAL * np.maximum(np.linalg.norm(rhs, axis=1), 1e-300))
        except np.linalg.LinAlgError:  # an exactly singular system: none is trusted
            return np.zeros_like(rhs), np.zeros(rhs.shape[0], dtype=bool)
        return sol, ok

    def _solve_equalities(self, cols: np.ndarray, alpha: np.ndarray, b: np.ndarray, S: np.ndarray,
                          B: np.ndarray) -> np.ndarray:
        """α_S and b of the machines ``cols`` from ``Q_SS α_S + y_S b = 1 − C Q_SB 1``, ``y_Sᵀ α_S =
        −C y_Bᵀ 1`` (one padded stack of systems), written into ``alpha`` and ``b``; returns the
        machines solved (the others are left to :meth:`_refine_alone`)."""
        kkt, at, machine, slot, _ = self._kkt_stack(cols, S)
        m = kkt.shape[1] - 1
        e = self._entries(cols)
        bound = e[B[e]]
        cB = self.C[bound] * self.y[bound]  # α y of the bound support vectors
        rhs = np.zeros((cols.size, m + 1))
        fB = self._products(cB, bound, cols, at) if bound.size else np.zeros(at.size)
        rhs[machine, slot] = 1.0 - self.y[at] * fB
        rhs[:, m] = -np.bincount(np.searchsorted(cols, self.mach[bound]), weights=cB, minlength=cols.size)
        sol, ok = self._solve_stack(kkt, rhs)
        keep = ok[machine]
        alpha[at[keep]] = sol[machine[keep], slot[keep]]
        b[cols[ok]] = sol[ok, m]
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
        sv = np.flatnonzero(np.any(coef != 0, axis=1))
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
        Sg_t, Sg_p = self.sign[a.t_trigger][:, cols], self.sign[a.t_poison][:, cols]
        weight = np.ones(a.X_poison.shape[0]) if a.weight is None else a.weight
        coef = self._coef_sv[:, cols]
        if self.linear:
            W = self._W[:, cols]
            Ft, Fp = a.X_trigger @ W + self.b[cols], a.X_poison @ W + self.b[cols]
        else:
            used = np.flatnonzero(np.any(coef != 0, axis=1))
            Xs, coef = self.X[self._sv[used]], coef[used]
            Kt = self.model._kernel_rows(a.X_trigger, Xs)
            Kp = self.model._kernel_rows(a.X_poison, Xs)
            Ft, Fp = Kt @ coef + self.b[cols], Kp @ coef + self.b[cols]
            position = np.full(self.X.shape[0], -1)
            position[self._sv[used]] = np.arange(used.size)
        enter = (Sg_p != 0) & (Sg_p * Fp < 1.0)
        V = np.where(enter, Sg_p * weight[:, None], 0.0)  # entering poison's α y per unit C β, per machine
        kkt, at, machine, slot, _ = self._kkt_stack(cols, self.S, self.model.damping)
        m = kkt.shape[1] - 1
        XS = self.X[self.r[at]]
        if self.linear:
            Uv = a.X_poison.T @ V
            KSv = np.einsum("ld,ld->l", XS, Uv.T[machine])  # K(x_s, X_poison) v of its machine
        else:
            KpS = Kp[:, position[self.r[at]]]
            KSv = np.einsum("pl,pl->l", KpS, V[:, machine])
        rhs = np.zeros((cols.size, m + 1))
        rhs[machine, slot] = -C * self.y[at] * KSv
        rhs[:, m] = -C * V.sum(axis=0)
        sol, ok = self._solve_stack(kkt, rhs)
        d_coef = self.y[at] * sol[machine, slot]  # dα_S y_S
        if self.linear:
            M = np.zeros((at.size, cols.size))
            M[np.arange(at.size), machine] = d_coef
            DF = a.X_trigger @ (XS.T @ M + C * Uv) + sol[:, m]
        else:
            M = np.zeros((position.max() + 1, cols.size))
            M[position[self.r[at]], machine] = d_coef  # a row's entries in different machines: no clash
            entering = np.flatnonzero(enter.any(axis=1))
            Ktp = self.model.kernel(a.X_trigger, a.X_poison[entering])
            DF = Kt @ M + C * (Ktp @ V[entering]) + sol[:, m]
        oriented = Sg_t * Ft
        kinks = on_the_kink(oriented)  # on the hinge's kink: active only if moved inside (as SVCSlope)
        active = (Sg_t != 0) & ((oriented < 1.0) & ~kinks | kinks & (Sg_t * DF < 0)) & ok
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


class _ClassBlocks:
    """The RBF training kernel in one block per class: block c holds ``K(X_c, x_j)`` for the rows of
    class c and the columns j its K − 1 machines use (the support vectors of the machines involving c;
    each column computed once) — the kernel entries the machines' margins need, and no others."""

    def __init__(self, model: ConvexSlopeModel, X: np.ndarray, codes: np.ndarray, sign: np.ndarray) -> None:
        self.model, self.X, self.sign = model, X, sign
        self.rows = [np.flatnonzero(codes == c) for c in range(sign.shape[0])]
        self.X_rows = [X[r] for r in self.rows]
        self.position = np.full((sign.shape[0], X.shape[0]), -1)
        self.K: list[np.ndarray] = [np.empty((r.size, 0)) for r in self.rows]

    def _ensure(self, c: int, cols: np.ndarray) -> None:
        missing = cols[self.position[c, cols] < 0]
        if missing.size:
            missing = np.unique(missing)
            start = self.K[c].shape[1]
            new = self.model._kernel_rows(self.X_rows[c], self.X[missing])
            self.K[c] = np.hstack([self.K[c], new]) if start else new
            self.position[c, missing] = start + np.arange(missing.size)

    def dot(self, coef: np.ndarray, machines: np.ndarray) -> np.ndarray:
        """``K(X, X) coef`` (n × m) for coefficient columns (n × m) of the machines ``machines``, on the
        rows of each machine's two classes (zero elsewhere)."""
        out = np.zeros((self.X.shape[0], machines.size))
        for c, rows_c in enumerate(self.rows):
            mine = np.flatnonzero(self.sign[c, machines] != 0)
            if mine.size == 0:
                continue
            sub = coef[:, mine]
            used = np.flatnonzero(np.any(sub != 0, axis=1))
            if used.size == 0:
                continue
            self._ensure(c, used)
            full = np.zeros((self.K[c].shape[1], mine.size))
            full[self.position[c, used]] = sub[used]
            out[rows_c[:, None], mine] = self.K[c] @ full
        return out


def _ovo_decision(estimator: Any, X: np.ndarray) -> np.ndarray:
    """libsvm's one-vs-one decision values of a fitted SVC (positive: the pair's first class)."""
    shape = estimator.decision_function_shape
    try:
        estimator.decision_function_shape = "ovo"
        return np.asarray(estimator.decision_function(X), dtype=np.float64)
    finally:
        estimator.decision_function_shape = shape
