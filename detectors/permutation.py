"""The persistence-preserving null: member series permuted among members matched in time.

Shuffling a process's columns window by window (shadow features) destroys what makes a
member's windows alike — persistence — so a shadow is easier to beat than any real process
and every process of a persistent ensemble looks significant.  Here the null keeps each
series whole: member *m*'s windows (its outcome, its window ends) receive the series of
member *pi(m)* at the **same model times**, where *pi* permutes members of one
configuration *at risk* at that time (record covering the window, not frozen yet).  The
donor of a member changes only when the set at risk changes (a member freezes or its record
ends): members are matched by two random rankings restricted to those at risk.  Everything a
member's series has in common with itself — persistence, drift, the shared forcing at a given
time — survives, no frozen state is handed to a window that never saw one, and only the link
between a series and an outcome is broken.

Refitting the explained model hundreds of times is too slow, so the test uses a cheap model
that is refitted on every permutation with the *same* folds: a class-balanced ridge
discriminant on the window summaries (standardised once, without labels).  Its statistic per
process is out-of-fold skill: the stratified ROC AUC of the process's part of the score
(its linear SHAP values summed, ``beta * (x - training mean)`` over the process's columns) on
the held-out windows, averaged over leads.  A magnitude (mean |SHAP|) would not do: with a
few persistent members a model fitted to noise has coefficients as large as one fitted to a
signal.  The p-value is the permutation rank of the observed statistic; the number of
permutations is chosen so that the Bonferroni level can be reached.  The null ROC AUCs of the
same refits give the *chance band* against which skill is read: cross-validated AUC without
information is not exactly 0.5 on a few persistent members.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from joblib import delayed

from detectors.crossval import Fold, fold_strata, parallel
from detectors.samples import SampleSet, Standardiser, summarise
from detectors.skill import stratified_auc


@dataclass(frozen=True)
class Design:
    """One lead of one view, reduced to what a permutation refit needs."""

    lead: int
    z: np.ndarray  # (members, ends, columns) standardised summaries of every member's window
    row: np.ndarray  # (n,) member of each window
    end: np.ndarray  # (n,) index into the design's window ends
    y: np.ndarray
    folds: tuple[tuple[np.ndarray, np.ndarray], ...]
    strata: np.ndarray  # (n,) fold x window end, for the stratified AUC
    process: np.ndarray  # (columns,) index of each column's process
    at_risk: np.ndarray  # (members, ends) bool: may lend its window at that end
    configuration: np.ndarray  # (members,) integer code; series move within one only


@dataclass
class PermutationNull:
    """Observed statistics and their permutation distributions for one view."""

    processes: list[str]
    leads: list[int]
    observed: np.ndarray  # (processes,) out-of-fold AUC of the process's score, mean of leads
    null: np.ndarray  # (permutations, processes)
    auc_observed: np.ndarray  # (leads,)
    auc_null: np.ndarray  # (permutations, leads)

    @property
    def n_permutations(self) -> int:
        return int(self.null.shape[0])

    def p_values(self) -> np.ndarray:
        """Permutation p-value per process: (1 + #null >= observed) / (K + 1)."""
        beaten = (self.null >= self.observed[None, :]).sum(axis=0)
        return (1.0 + beaten) / (self.n_permutations + 1.0)

    def null_quantile(self, level: float) -> np.ndarray:
        """The null statistic each process must exceed at this (one-sided) level."""
        return np.quantile(self.null, 1.0 - level, axis=0)

    def chance_band(self, lead: int, level: float = 0.9) -> tuple[float, float]:
        """Central ``level`` interval of the null ROC AUCs at one lead."""
        values = self.auc_null[:, self.leads.index(lead)]
        values = values[np.isfinite(values)]
        if values.size == 0:
            return float("nan"), float("nan")
        lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi)


def n_permutations(n_processes: int, alpha: float, requested: int | None) -> int:
    """Enough permutations that a process beating every null draw reaches alpha / n.

    A permutation p-value is at least 1 / (K + 1); Bonferroni asks for alpha / n, and twice
    the minimum leaves room for a process that a few null draws equal.
    """
    needed = math.ceil(2 * n_processes / alpha)
    return max(requested or 0, needed)


def build_design(samples: SampleSet, folds: list[Fold], processes: list[str]) -> Design:
    """Summaries of every member's window at every window end of the sample set."""
    if samples.source is None or samples.row is None:
        raise ValueError("samples carry no source series; build them with build_samples")
    source = samples.source
    scaler = Standardiser().fit(samples)  # no labels: the same for the data and every null
    ends, end_pos = np.unique(samples.end_index, return_inverse=True)
    win = samples.rule.window_months
    n_members = source.data.shape[0]
    z = []
    for e in ends:
        month = samples.end_month[samples.end_index == e][0]
        start = max(e - win + 1, 0)
        seq = source.data[:, :, start : e + 1]
        if seq.shape[2] < win:
            seq = np.concatenate(
                [np.full((*seq.shape[:2], win - seq.shape[2]), np.nan, np.float32), seq], axis=2
            )
        windows = replace(samples, sequences=seq, end_month=np.full(n_members, month))
        z.append(summarise(scaler.transform(windows), samples.rule.block_months))
    columns = samples.summary_columns()
    process_of = dict(zip(samples.features, samples.processes, strict=True))
    process = np.array([processes.index(process_of[f]) for f, _ in columns])
    at_risk = (
        (source.first_valid[:, None] <= ends[None, :] - win + 1)
        & (source.last_valid[:, None] >= ends[None, :])
        & (ends[None, :] < source.onset[:, None])
    )
    at_risk[samples.row, np.ravel(end_pos)] = True  # every observed window is its own donor
    return Design(
        lead=samples.lead,
        z=np.stack(z, axis=1).astype(np.float32),
        row=samples.row,
        end=np.ravel(end_pos),
        y=samples.y,
        folds=tuple((f.train, f.test) for f in folds),
        strata=fold_strata(samples, folds),
        process=process,
        at_risk=at_risk,
        configuration=np.unique(np.asarray(source.configuration).astype(str), return_inverse=True)[
            1
        ].ravel(),
    )


def _ridge(x: np.ndarray, y: np.ndarray, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced ridge discriminant: coefficients and the weighted training mean."""
    w = np.where(y == 1, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1))
    mean = w @ x
    xc = x - mean
    gram = (xc * w[:, None]).T @ xc
    gram[np.diag_indices_from(gram)] += strength
    beta = np.linalg.solve(gram, xc.T @ (w * (y - w @ y)))
    return beta, mean


def donors(design: Design, keys: np.ndarray | None) -> np.ndarray:
    """Donor member of every (member, end): identity for ``keys=None``.

    ``keys`` (2, members) are two random rankings; at each end, within a configuration, the
    member at risk with the i-th smallest first key receives the series of the member at
    risk with the i-th smallest second key.
    """
    n_members, n_ends = design.at_risk.shape
    out = np.tile(np.arange(n_members)[:, None], (1, n_ends))
    if keys is None:
        return out
    for code in np.unique(design.configuration):
        mask = design.at_risk & (design.configuration == code)[:, None]
        order_in = np.argsort(np.where(mask, keys[0][:, None], np.inf), axis=0, kind="stable")
        order_out = np.argsort(np.where(mask, keys[1][:, None], np.inf), axis=0, kind="stable")
        valid = np.arange(n_members)[:, None] < mask.sum(axis=0)[None, :]
        cols = np.broadcast_to(np.arange(n_ends)[None, :], order_in.shape)
        out[order_in[valid], cols[valid]] = order_out[valid]
    return out


def _statistics(
    design: Design, keys: np.ndarray | None, n_processes: int, strength: float
) -> tuple[np.ndarray, float]:
    """Per-process and whole-model stratified out-of-fold ROC AUC of one refit."""
    donor = donors(design, keys)[design.row, design.end]
    x = design.z[donor, design.end].astype(np.float64)
    partial = np.full((design.y.size, n_processes), np.nan)
    indicator = np.zeros((x.shape[1], n_processes))
    indicator[np.arange(x.shape[1]), design.process] = 1.0
    for train, test in design.folds:
        beta, mean = _ridge(x[train], design.y[train], strength)
        partial[test] = ((x[test] - mean) * beta) @ indicator
    per_process = np.array(
        [stratified_auc(design.y, partial[:, k], design.strata) for k in range(n_processes)]
    )
    return per_process, stratified_auc(design.y, partial.sum(axis=1), design.strata)


def _run(
    designs: list[Design], permutations: list[np.ndarray | None], n_processes: int, strength: float
) -> tuple[np.ndarray, np.ndarray]:
    importance = np.zeros((len(permutations), n_processes))
    auc = np.zeros((len(permutations), len(designs)))
    for k, keys in enumerate(permutations):
        for d, design in enumerate(designs):
            imp, auc[k, d] = _statistics(design, keys, n_processes, strength)
            importance[k] += imp / len(designs)
    return importance, auc


def permutation_null(
    designs: list[Design],
    processes: list[str],
    n_permutations: int,
    *,
    strength: float,
    seed: int,
    n_jobs: int | None,
) -> PermutationNull:
    """Observed and permuted statistics of one view over its leads (refits in parallel)."""
    n_members = designs[0].z.shape[0]
    rng = np.random.default_rng(seed)
    keys = list(rng.random((n_permutations, 2, n_members)))
    n_chunks = max(1, min(len(keys), 4 * (n_jobs or 2)))
    chunks = [list(c) for c in np.array_split(np.arange(len(keys)), n_chunks) if len(c)]
    out = parallel(n_jobs, chunks)(
        delayed(_run)(designs, [keys[i] for i in chunk], len(processes), strength)
        for chunk in chunks
    )
    observed, auc_observed = _run(designs, [None], len(processes), strength)
    return PermutationNull(
        processes=processes,
        leads=[d.lead for d in designs],
        observed=observed[0],
        null=np.concatenate([o[0] for o in out]),
        auc_observed=auc_observed[0],
        auc_null=np.concatenate([o[1] for o in out]),
    )
