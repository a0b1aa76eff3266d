"""One-vs-rest learners with K ≥ 3 classes: ``LinearSVC`` and ``SGDClassifier``, as scikit-learn fits them.

Machine k is the binary learner of class k (+1) against all other rows (−1), trained on every row;
each is polished (or refined) and differentiated as the binary adapter — the binary problem is the
one-machine case. A poison row enters every machine (as +1 in its label's machine, −1 elsewhere),
with weight β κ_c. Scores ``F[:, k] = f_k``; prediction = argmax (scikit-learn's rule).

Curve loss: the loss of the target's machine with the target as the positive side — LinearSVC
``max(0, 1 − f_target)²``, SGD its own loss of ``f_target`` — averaged over the triggered points.
Margins: ``f_target − max_{k ≠ target} f_k`` with the derivative of the active max; so every machine
is solved (K solves per attack).

Class weights multiply each row's weight in every machine (κ of the row's class; liblinear itself
weighs only the positive class of each machine — the slope's refits, ``fit_weighted``, use the
slope's definition).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from robust_hpo.slope._base import Attack, AttackSolution, ConvexSlopeModel, MulticlassPart, best_other
from robust_hpo.slope._krylov import one_blas_thread
from robust_hpo.slope._multiclass import primal_is_cheap
from robust_hpo.slope._ovr_batch import polish_all, solve_machines


class OneVsRest(MulticlassPart):
    """K binary machines of class ``machine_class`` (a binary :class:`ConvexSlopeModel`)."""

    def __init__(self, machine_class: type) -> None:
        self.machine_class = machine_class
        self.loss_name = f"{machine_class.loss_name} (one-vs-rest, the target's machine)"

    def prepare(self, model: ConvexSlopeModel, X: np.ndarray, codes: np.ndarray) -> dict[str, Any]:
        est = model.estimator_
        self.K = model.n_classes_
        if np.ndim(est.intercept_) == 0:  # liblinear without an intercept stores the scalar 0.0: one per machine
            est.intercept_ = np.full(self.K, float(est.intercept_))
        self.machines: list[ConvexSlopeModel] = []
        own_fit = getattr(self.machine_class, "fits_its_own_estimator", False)
        details: dict[str, Any] = {"n_classes": self.K, "machines": self.K}
        if not own_fit and primal_is_cheap(*X.shape) and hasattr(self.machine_class, "_objective_constants"):
            batched = self._prepare_batched(model, X, codes)
            if batched is not None:
                return batched
        starts = None
        for k in range(self.K):
            machine = self.machine_class(model.estimator, damping=model.damping)
            if primal_is_cheap(*X.shape) and hasattr(machine, "space"):
                machine.space = "primal"  # a small (d+1)×(d+1) Hessian: factorised, no CG (see primal_is_cheap)
            y_pm = np.where(codes == k, 1.0, -1.0)
            machine.classes_ = np.array([-1, k])
            machine.n_features_, machine.n_clean_ = X.shape[1], X.shape[0]
            machine._multi, machine._memo, machine.weights_ = None, None, model.weights_
            machine.fit_seconds_, machine.prepare_seconds_ = 0.0, 0.0
            if own_fit:  # SGD's hinge: the exact optimum from a batched start, or libsvm one machine at a time
                machine.estimator_ = machine._estimator_for_fit(X)
                if k == 0 and hasattr(machine, "one_vs_rest_starts"):
                    starts = machine.one_vs_rest_starts(X, np.where(codes[:, None] == np.arange(self.K)[None, :],
                                                                    1.0, -1.0))
                if starts is not None:
                    machine._dual_start = starts[k]  # refined and checked in _prepare (libsvm if it does not settle)
                else:
                    machine._fit_estimator(machine.estimator_, X, y_pm)
            else:  # LinearSVC, SGD (smooth): machine k starts from row k of the fitted coefficients
                view = copy.copy(est)  # a cheap view: its fitted attributes are replaced, not mutated
                view.coef_ = np.asarray(est.coef_[k:k + 1], dtype=np.float64).copy()
                view.intercept_ = np.asarray(est.intercept_[k:k + 1], dtype=np.float64).copy()
                machine.estimator_ = view
            machine.details_ = machine._prepare(X, y_pm)
            if not own_fit:
                est.coef_[k] = machine.estimator_.coef_[0]
                est.intercept_[k] = np.ravel(machine.estimator_.intercept_)[0]
            elif getattr(machine, "_w", None) is not None:  # SGD's hinge: the optimum's hyperplane, so
                est.coef_[k], est.intercept_[k] = machine._w, machine._b  # that est predicts with it
            self.machines.append(machine)
            details["method"] = machine.details_["method"]
            if starts is not None:  # how each machine's optimum was found: the batched start, or libsvm after it
                details["libsvm_fits"] = details.get("libsvm_fits", 0) + (machine.details_["start"] != starts[k].name)
            for key in ("residual_fit", "residual"):
                details[key] = max(details.get(key, 0.0), machine.details_.get(key, 0.0))
            details["newton_steps"] = details.get("newton_steps", 0) + machine.details_.get("newton_steps", 0)
        details["method"] = f"ovr-{details['method']}"
        if starts is not None:
            details.update(start=starts[0].name, start_newton_steps=starts[0].newton_steps)
        return details

    def _machine(self, model: ConvexSlopeModel, X: np.ndarray, k: int) -> ConvexSlopeModel:
        """Machine k's binary adapter, its estimator a view of row k of the fitted coefficients."""
        est = model.estimator_
        machine = self.machine_class(model.estimator, damping=model.damping)
        machine.classes_ = np.array([-1, k])
        machine.n_features_, machine.n_clean_ = X.shape[1], X.shape[0]
        machine._multi, machine._memo, machine.weights_ = None, None, model.weights_
        machine.fit_seconds_, machine.prepare_seconds_ = 0.0, 0.0
        view = copy.copy(est)  # a cheap view: its fitted attributes are replaced, not mutated
        view.coef_ = np.asarray(est.coef_[k:k + 1], dtype=np.float64).copy()
        view.intercept_ = np.asarray(est.intercept_[k:k + 1], dtype=np.float64).copy()
        machine.estimator_ = view
        return machine

    def _prepare_batched(self, model: ConvexSlopeModel, X: np.ndarray, codes: np.ndarray) -> dict[str, Any] | None:
        """All machines polished together (:mod:`._ovr_batch`); None: polish them one by one."""
        est = model.estimator_
        machines = [self._machine(model, X, k) for k in range(self.K)]
        fit_intercept = bool(est.fit_intercept)
        W = np.asarray(est.coef_, dtype=np.float64).T
        Theta = np.vstack([W, np.asarray(est.intercept_, dtype=np.float64)[None, :]]) if fit_intercept else W.copy()
        Y = np.where(codes[:, None] == np.arange(self.K)[None, :], 1.0, -1.0)
        result = polish_all(machines, X, Y, Theta, fit_intercept, model.clean_weights(), model.damping)
        if result is None:
            return None
        Theta, factors, details = result
        c, r_w, r_b = machines[0]._objective_constants()
        d = X.shape[1]
        for k, machine in enumerate(machines):
            machine._c, machine._r_w, machine._r_b = c, r_w, r_b
            machine._fit_intercept, machine._sw = fit_intercept, machine.clean_weights()
            machine._w, machine._b = Theta[:d, k].copy(), float(Theta[d, k]) if fit_intercept else 0.0
            machine._hessian = factors[k]
            machine._class_gradients = None
            if model.weights_.spec == "balanced":  # c Σ_{i ∈ j} s_i ∇θ ℓ_i per class j: κ' moves them
                g = machine.loss_grad(Y[:, k], machine.decision_function(X)) * model.weights_.sample
                machine._class_gradients = np.column_stack(
                    [c * machine._gradient(X, np.where(model.weights_.codes == j, g, 0.0))
                     for j in range(model.weights_.K)])
            machine._write_back()
            machine.details_ = {"method": factors[k].method, "space": factors[k].space, "n_features": d}
            est.coef_[k] = machine._w
            if fit_intercept:
                est.intercept_[k] = machine._b
        self.machines = machines
        self.batched = (Theta, factors, c, fit_intercept)
        return {"n_classes": self.K, "machines": self.K, "method": "ovr-primal-cholesky-batched", **details}

    def scores(self, X: np.ndarray) -> np.ndarray:
        return np.column_stack([m.decision_function(X) for m in self.machines])

    def scores_of(self, estimator: Any, X: np.ndarray) -> np.ndarray:
        return np.asarray(estimator.decision_function(X), dtype=np.float64)

    def predict_from(self, F: np.ndarray) -> np.ndarray:
        return np.argmax(F, axis=1)

    def margins_from(self, F: np.ndarray, codes: np.ndarray) -> np.ndarray:
        return best_other(F, codes)[0]

    def loss_from(self, F: np.ndarray, codes: np.ndarray) -> np.ndarray:
        target = F[np.arange(F.shape[0]), codes]
        return self.machines[0].pointwise_loss(np.ones_like(target), target)

    def _target_grad(self, f: np.ndarray) -> np.ndarray:
        """∂(target machine's loss)/∂f_target (the hinge: its right derivative's slope where f < 1)."""
        machine = self.machines[0]
        one = np.ones_like(f)
        if hasattr(machine, "loss_grad"):
            return machine.loss_grad(one, f)
        return np.where(f < 1.0, -1.0, 0.0)

    def _solve_batched(self, a: Attack) -> AttackSolution:
        """All machines' dθ/dβ at once (no scaler motion, no moving class weights): the machines'
        ``−H_k⁻¹ c Σ_j κ_j ∇θ ℓ(y_jk, f_k(x̃_j))`` from their factors, one product for all scores."""
        Theta, factors, c, fit_intercept = self.batched
        machine = self.machines[0]

        def design(A: np.ndarray) -> np.ndarray:
            return np.hstack([A, np.ones((A.shape[0], 1))]) if fit_intercept else A

        Zp, Zt = design(a.X_poison), design(a.X_trigger)
        Yp = np.where(a.t_poison[:, None] == np.arange(self.K)[None, :], 1.0, -1.0)
        g = machine.loss_grad(Yp, Zp @ Theta)
        if a.weight is not None:
            g = g * a.weight[:, None]
        G = c * (Zp.T @ g)
        D = -solve_machines(factors, G)
        F, dF = Zt @ Theta, Zt @ D
        rows = np.arange(F.shape[0])
        target = F[rows, a.t_trigger]
        value = float(np.sum(self._target_grad(target) * dF[rows, a.t_trigger]) / F.shape[0])
        margin, other = best_other(F, a.t_trigger)
        return AttackSolution(value, margin, dF[rows, a.t_trigger] - dF[rows, other],
                              {"cg_iterations": factors[0].cg_iterations}, oriented=True)

    def solve(self, attacks: Sequence[Attack]) -> list[AttackSolution]:
        out = []
        for a in attacks:
            if getattr(self, "batched", None) is not None and a.motion is None and a.class_motion is None:
                with one_blas_thread:
                    out.append(self._solve_batched(a))
                continue
            n_t = a.X_trigger.shape[0]
            F = np.empty((n_t, self.K))
            dF = np.empty_like(F)
            exact = True
            for k, machine in enumerate(self.machines):
                sub = Attack(a.X_poison, np.where(a.t_poison == k, 1.0, -1.0), a.X_trigger,
                             np.where(a.t_trigger == k, 1.0, -1.0), a.motion, a.weight, a.class_motion)
                solution = machine._solve_attacks([sub])[0]
                F[:, k], dF[:, k] = solution.f_trigger, solution.df_trigger
                exact = exact and solution.exact
            rows = np.arange(n_t)
            target = F[rows, a.t_trigger]
            value = float(np.sum(self._target_grad(target) * dF[rows, a.t_trigger]) / n_t)
            margin, other = best_other(F, a.t_trigger)
            out.append(AttackSolution(value, margin, dF[rows, a.t_trigger] - dF[rows, other], {}, exact=exact,
                                      oriented=True))
        return out

    def point_influences(self, X: np.ndarray, codes: np.ndarray, X_test: np.ndarray, test_codes: np.ndarray, *,
                         in_fit: bool, quantity: str = "loss") -> np.ndarray:
        """Summed over the machines (each sees every row, labelled +1 in its class's machine): the loss
        is the target machine's at +1; ``"margin"`` = −(f_target − f_best other) enters the target's
        machine (+1) and the best other's (−1). Each machine's part is the binary
        ``point_influences`` on its test rows, weighted by their share."""
        n_t = X_test.shape[0]
        out = np.zeros(X.shape[0])
        other = best_other(self.scores(X_test), test_codes)[1] if quantity == "margin" else None
        for k, machine in enumerate(self.machines):
            tests = test_codes == k if other is None else (test_codes == k) | (other == k)
            if tests.any():
                out += tests.sum() / n_t * machine.point_influences(
                    X, np.where(codes == k, 1.0, -1.0), X_test[tests], np.where(test_codes[tests] == k, 1.0, -1.0),
                    in_fit=in_fit, quantity=quantity)
        return out

    def scaler_sensitivity(self, X_test: np.ndarray, test_codes: np.ndarray,
                           quantity: str = "loss") -> tuple[np.ndarray, np.ndarray] | None:
        """(∂L/∂ρ'_f, ∂L/∂a_f) summed over the machines as in :meth:`point_influences`; None where
        the machines have no such method (SGD's hinge: the caller solves per feature instead)."""
        if not all(hasattr(m, "scaler_sensitivity") for m in self.machines):
            return None
        n_t, d = X_test.shape
        g_rho, g_a = np.zeros(d), np.zeros(d)
        other = best_other(self.scores(X_test), test_codes)[1] if quantity == "margin" else None
        for k, machine in enumerate(self.machines):
            tests = test_codes == k if other is None else (test_codes == k) | (other == k)
            if tests.any():
                r, a = machine.scaler_sensitivity(X_test[tests], np.where(test_codes[tests] == k, 1.0, -1.0),
                                                  quantity)
                g_rho += tests.sum() / n_t * r
                g_a += tests.sum() / n_t * a
        return g_rho, g_a
