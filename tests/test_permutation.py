"""The persistence-preserving null, stratified skill, censoring and configurations."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import numpy as np
import pytest
import xarray as xr
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from detectors.attribution import share_not_beyond
from detectors.crossval import fold_inputs, fold_strata, make_folds
from detectors.labels import Labels, label_freezes
from detectors.permutation import build_design, donors, permutation_null
from detectors.precursors.analysis import AnalysisError, analyse_precursors
from detectors.precursors.settings import PrecursorSettings
from detectors.samples import SampleRule, build_samples, view_features
from detectors.skill import stratified_auc
from ensembles.errors import ConfigurationError
from ensembles.features import with_configurations
from synth.ensemble import simulate_ensemble
from synth.table import feature_table

MEMBERS, YEARS = 20, 25


@cache
def _table(scenario: str = "null", seed: int = 4) -> xr.Dataset:
    sim = simulate_ensemble("freeze-database", scenario, members=MEMBERS, years=YEARS, seed=seed)
    return feature_table(
        sim, [f"b.e30.perm.{i:03d}" for i in range(MEMBERS)], ensemble="b.e30.perm"
    )


def _with_outcome_in_precipitation() -> xr.Dataset:
    """The null table with precipitation made a copy of the interior salinity, which does
    precede the freeze: a driver-role process that carries the outcome."""
    table = _table().copy()
    table["pr_labsea"] = (
        table["so_upper_labsea_interior"]
        .copy(data=table["so_upper_labsea_interior"].values)
        .assign_attrs(table["pr_labsea"].attrs)
    )
    return table


def _drivers(table: xr.Dataset, labels: Labels, lead: int = 12):
    base = build_samples(table, labels, lead)
    samples = base.select(view_features(base, "drivers"), "drivers")
    return samples, make_folds(samples, 4, seed=0)


def test_donors_permute_members_at_risk_and_never_lend_a_frozen_state() -> None:
    table = _table()
    labels = label_freezes(table)
    samples, folds = _drivers(table, labels)
    processes = sorted(set(samples.processes))
    design = build_design(samples, folds, processes)
    np.testing.assert_array_equal(donors(design, None)[:, 0], np.arange(MEMBERS))
    keys = np.random.default_rng(0).random((2, MEMBERS))
    lent = donors(design, keys)
    ends = np.unique(samples.end_index)
    onset = samples.source.onset
    moved = 0
    for e, end in enumerate(ends):
        risk = np.flatnonzero(design.at_risk[:, e])
        assert sorted(lent[risk, e]) == sorted(risk)  # a permutation of those at risk
        assert (onset[lent[risk, e]] > end).all()  # no donor is frozen by the window's end
        moved += int((lent[risk, e] != risk).sum())
    assert moved > 0
    # persistence: a member keeps its donor while the set at risk does not change
    same = [
        (lent[:, e] == lent[:, e + 1])[design.at_risk[:, e] & design.at_risk[:, e + 1]].mean()
        for e in range(len(ends) - 1)
        if (design.at_risk[:, e] == design.at_risk[:, e + 1]).all()
    ]
    assert same and min(same) == 1.0


def test_a_process_carrying_the_outcome_beats_the_null_and_noise_does_not() -> None:
    table = _with_outcome_in_precipitation()
    labels = label_freezes(table)
    samples, folds = _drivers(table, labels)
    processes = sorted(set(samples.processes))
    null = permutation_null(
        [build_design(samples, folds, processes)], processes, 59, strength=0.1, seed=0, n_jobs=1
    )
    p = dict(zip(processes, null.p_values(), strict=True))
    assert p["precipitation"] == pytest.approx(1 / 60)
    others = [v for k, v in p.items() if k != "precipitation"]
    assert min(others) > 0.05 / len(processes), p
    lo, hi = null.chance_band(12)
    assert lo < 0.5 < hi < null.auc_observed[0]  # the whole model is above chance too


def test_stratified_skill_of_a_shared_time_signal_is_chance() -> None:
    """A signal common to all members at a time, unrelated to outcomes, pulls the pooled
    out-of-fold AUC below 0.5 (training positives' times look positive, and the test
    negatives at those times pay); compared within fold and window end it cannot."""
    table = _table()
    samples, _ = _drivers(table, label_freezes(table))
    rng = np.random.default_rng(1)
    common = rng.standard_normal((samples.sequences.shape[1], table.sizes["time"]))
    win = samples.rule.window_months
    seq = np.stack([common[:, e - win + 1 : e + 1] for e in samples.end_index])
    seq = seq + 0.3 * rng.standard_normal(seq.shape)
    shared = replace(samples, sequences=seq.astype(np.float32))
    shared_folds = make_folds(shared, 4, seed=0)
    score = np.full(shared.y.size, np.nan)
    for fold in shared_folds:
        model = LogisticRegression(C=0.05, class_weight="balanced", max_iter=500).fit(
            fold_inputs(shared, fold, fold.train, "summary"), shared.y[fold.train]
        )
        score[fold.test] = model.decision_function(fold_inputs(shared, fold, fold.test, "summary"))
    pooled = roc_auc_score(shared.y, score)
    stratified = stratified_auc(shared.y, score, fold_strata(shared, shared_folds))
    assert pooled < 0.4
    assert 0.4 < stratified < 0.6


def test_censored_windows_are_dropped_not_negatives() -> None:
    table = _table()
    labels = label_freezes(table)
    member = next(
        str(m) for m, f in zip(labels.froze.member.values, labels.froze.values, strict=True) if f
    )
    onset_year = int(str(labels.onset.sel(member=member).item())[:4])
    # cut the record after two frozen winters: the member is no longer known to freeze
    cut = table.isel(time=slice(0, (onset_year + 1) * 12))
    cut_labels = label_freezes(cut)
    assert not bool(cut_labels.froze.sel(member=member))
    assert str(cut_labels.censored_from.sel(member=member).item()) == f"{onset_year:04d}-01"
    rule = SampleRule()
    samples = build_samples(cut, cut_labels, 12, rule=rule)
    censor = (onset_year - 1) * 12  # index of January of the onset year (records start 0001)
    mine = samples.member == member
    assert mine.any() and samples.n_censored > 0
    assert (samples.end_index[mine] + 12 + rule.negative_margin_months < censor).all()


def test_a_configuration_without_negatives_is_a_clear_error() -> None:
    table = _table("greenland_runoff", seed=1)
    labels = label_freezes(table)
    lone = int(np.flatnonzero(labels.froze.values)[0])
    # a frozen development run alone in its configuration: nobody can be its negative
    config = np.where(np.arange(MEMBERS) == lone, "B1850.dev.frozen", "B1850.dev.other")
    labelled = table.assign_coords(configuration=("member", config))
    with pytest.raises(AnalysisError, match=r"B1850\.dev\.frozen"):
        analyse_precursors(
            labelled,
            PrecursorSettings(
                models=("logistic",), n_boot=50, n_folds=2, samples=SampleRule(leads_months=(12,))
            ),
        )


def test_configurations_come_from_the_roots_not_the_case_names() -> None:
    table = _table().assign_coords(root_index=("member", np.arange(MEMBERS) % 2))
    labelled = with_configurations(table, ["B1850 ne30_t232 dev07", None])
    config = labelled.configuration.values
    assert set(config[::2]) == {"B1850 ne30_t232 dev07"}
    assert set(config[1::2]) == {"b.e30.perm"}  # no configuration given: the case-name rule
    with pytest.raises(ConfigurationError, match="one per root"):
        with_configurations(table, ["only one"])
    with pytest.raises(ConfigurationError, match="which root"):
        with_configurations(_table(), ["x"])


FAST_BOTH_VIEWS = PrecursorSettings(models=("logistic",), n_boot=50, n_folds=4, n_jobs=1,
                                    kernel_samples=0, samples=SampleRule(leads_months=(12,)))


def test_full_view_significance_is_the_permutation_test_and_skill_reads_against_the_band(
) -> None:
    """The full view has no drop test, so a driver-role process that carries the outcome is
    significant there on the permutation test alone, noise drivers are not, and every
    classifier's skill row carries its view's chance band and is read against it."""
    result = analyse_precursors(_with_outcome_in_precipitation(), FAST_BOTH_VIEWS)
    full = {p.process: p for p in result.processes if p.view == "full"}
    level = FAST_BOTH_VIEWS.alpha / len(full)
    planted = full["precipitation"]
    assert planted.significant and planted.p_value <= level and planted.drop_auc is None
    assert planted.test_auc > planted.null_auc
    for p in full.values():  # significance in this view is exactly the permutation test
        assert p.significant == (p.p_value <= level), p
    noise = [p.process for p in full.values() if p.role == "driver" and p.significant
             and p.process != "precipitation"]
    assert not noise
    rows = [r for r in result.skill if r.model == "logistic"]
    assert {r.view for r in rows} == {"full", "drivers"}
    for row in rows:
        lo, hi = row.chance_band
        assert lo < 0.5 < hi and row.above_chance == (row.roc_auc > hi)
    # the Lab Sea's own state foreshadows the freeze: the full view's skill is beyond chance
    assert all(r.above_chance for r in rows if r.view == "full")


def test_the_null_scenario_stays_inside_the_chance_band_and_raises_nothing() -> None:
    """No driver carries information in the null scenario: the drivers view's skill lies in
    the permutation chance band and no process of that view is significant."""
    result = analyse_precursors(_table(), FAST_BOTH_VIEWS.model_copy(
        update={"views": ("drivers",)}))
    assert not [p.process for p in result.processes if p.significant]
    (row,) = [r for r in result.skill if r.model == "logistic"]
    lo, hi = row.chance_band
    assert lo <= row.roc_auc <= hi and row.above_chance is False


def test_drop_test_counts_refit_noise_with_its_sign() -> None:
    """A drop loss is measured against the refits' own loss, sign included: when refitting
    happens to score better than the explained fit (negative loss), dropping a process
    costs *more* relative to the refits, not less; undefined draws are left out."""
    drop = np.array([0.10, 0.05, 0.0, np.nan])
    refit_better = np.array([-0.05, -0.05, -0.05, 0.0])
    assert share_not_beyond(drop, refit_better) == 0.0  # the old |refit| bar failed 2 of 3
    assert share_not_beyond(drop, -refit_better) == pytest.approx(2 / 3)
    assert share_not_beyond(np.zeros(3), np.zeros(3)) == 1.0  # a tie is not a loss
    assert share_not_beyond(np.full(2, np.nan), np.zeros(2)) == 1.0
