"""The Lab Sea freshwater budget on feature tables with known analytic fluxes.

Each table is built from a flux given in closed form (a mean, a seasonal cycle and a ramp),
and the layer's salinity from the exact time integral of that flux, so the budget's
tendency, terms and residual can be checked against arithmetic done here, not against the
budget's own discretisation.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from detectors.budget.analysis import freshwater_budget
from detectors.budget.pathways import PATHWAYS
from detectors.budget.settings import BudgetSettings
from detectors.labels import LabelRule, Labels
from ensembles.timeaxis import month_centre

MEMBERS, YEARS = 16, 40
AREA = 1.0e12  # m2
DEPTH = 100.0  # m, the registry's upper layer
S_REF = 34.8
MONTH_S = 365 * 86400 / 12
FROZEN = {0: 25, 1: 28, 2: 30, 3: 33}  # member -> onset year (January)
SETTINGS = BudgetSettings(area_m2=AREA, reference_salinity=S_REF, n_boot=300)
ICE_FRESH = 0.917 * (1 - 4.0 / 34.8)  # fresh water per unit of melted sea ice (S_ice = 4)


def _flux(
    mean: float, seasonal: float, ramp_per_year: np.ndarray | float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Monthly means (mSv) of a flux and the exact freshwater content (m3) at mid-month.

    flux(t) = mean + seasonal cos(w t) + ramp t (t in months); the content is its integral.
    """
    t = np.arange(YEARS * 12) + 0.5
    w = 2 * np.pi / 12
    ramp = np.broadcast_to(np.asarray(ramp_per_year, float) / 12, (MEMBERS,))[:, None]
    # the monthly mean of the cosine over [t-0.5, t+0.5] is cos(w t) sin(w/2)/(w/2)
    monthly = mean + seasonal * np.cos(w * t) * np.sin(w / 2) / (w / 2) + ramp * t
    content = (mean * t + seasonal * np.sin(w * t) / w + ramp * t**2 / 2) * MONTH_S * 1e3
    shape = (MEMBERS, t.size)
    return np.broadcast_to(monthly, shape).copy(), np.broadcast_to(content, shape).copy()


def _table(fluxes: dict[str, np.ndarray], content: np.ndarray, **extra: np.ndarray) -> xr.Dataset:
    salinity = S_REF * (1 - (content + 0.02 * AREA * DEPTH) / (AREA * DEPTH))
    data = {"so_upper_labsea": salinity, **fluxes, **extra}
    times = [month_centre(f"{1 + i // 12:04d}-{i % 12 + 1:02d}") for i in range(YEARS * 12)]
    return xr.Dataset(
        {k: (("member", "time"), v) for k, v in data.items()},
        coords={"member": [f"m{i:02d}" for i in range(MEMBERS)], "time": times},
    )


def _labels(table: xr.Dataset, censored: dict[int, str] | None = None) -> Labels:
    members = table.member.values
    n = members.size
    censored = censored or {}
    onset = [f"{FROZEN[i]:04d}-01" if i in FROZEN else "" for i in range(n)]
    return Labels(
        froze=xr.DataArray([i in FROZEN for i in range(n)], coords={"member": members}),
        onset=xr.DataArray(onset, coords={"member": members}),
        frozen_winter=None,
        rule=LabelRule(),
        mixed_layer=None,
        censored_from=xr.DataArray(
            [censored.get(i, "") for i in range(n)], coords={"member": members}
        ),
    )


def _term(budget, source):
    return next(t for t in budget.terms if t.source == source)


@pytest.mark.parametrize("pathway", PATHWAYS, ids=lambda p: p.source)
def test_each_term_alone_closes_the_budget(pathway) -> None:
    """A known flux through one pathway: the term equals it and the residual vanishes."""
    measure = pathway.measures[0]
    flux, content = _flux(6.0, 4.0, ramp_per_year=0.05)
    share = 1.0 / len(measure.features)
    factor = ICE_FRESH if pathway.ice_import else 1.0
    fluxes = {name: sign * share * flux / factor for name, sign in measure.features}
    budget = freshwater_budget(
        _table(fluxes, content), _labels(_table(fluxes, content)), settings=SETTINGS
    )
    term = _term(budget, pathway.source)
    assert term.computable and term.features == measure.names
    assert term.mean_msv == pytest.approx(float(flux.mean()), rel=1e-6)
    assert budget.closure < 0.1, f"residual/tendency {budget.closure:.3f}"
    others = [t for t in budget.terms if t.computable and t.source != pathway.source]
    assert not others or pathway.minus_ice_import  # only the fed term is computable


def test_imported_ice_is_counted_once() -> None:
    """The ice-ocean flux holds the melt of imported ice: import + local = the flux."""
    imported, content_i = _flux(3.0, 3.0)
    local, content_l = _flux(-1.0, 5.0)
    table = _table(
        {"dvidtd_labsea": imported / ICE_FRESH, "fsitherm_labsea": imported + local},
        content_i + content_l,
    )
    budget = freshwater_budget(table, _labels(table), settings=SETTINGS)
    assert _term(budget, "sea_ice_import").mean_msv == pytest.approx(imported.mean(), rel=1e-6)
    assert _term(budget, "sea_ice_melt").mean_msv == pytest.approx(local.mean(), abs=1e-6)
    assert budget.closure < 0.1


def test_land_runoff_explains_the_shelf_flux_with_its_lag_and_is_not_added() -> None:
    rng = np.random.default_rng(0)
    white = rng.normal(0, 1.0, (MEMBERS, YEARS * 12 + 2))
    weather = np.zeros_like(white)  # AR(1), 0.8 per month: runoff is smooth month to month
    for t in range(1, white.shape[1]):
        weather[:, t] = 0.8 * weather[:, t - 1] + 0.6 * white[:, t]
    land = 30.0 + 5.0 * weather
    shelf = 0.35 * land[:, :-2]  # the shelf receives a third of it two months later
    land = land[:, 2:]
    content = (np.cumsum(shelf, axis=1) - shelf / 2) * MONTH_S * 1e3  # at mid-month
    table = _table(
        {"friver_west_greenland_shelf": shelf, "ficeberg_labsea": 0 * shelf},
        content,
        qrunoff_greenland=land,
    )
    budget = freshwater_budget(table, _labels(table), settings=SETTINGS)
    term = _term(budget, "greenland_runoff")
    assert term.mean_msv == pytest.approx(shelf.mean(), rel=1e-6)  # land runoff not added
    (explainer,) = [e for e in term.explained_by if e.feature == "qrunoff_greenland"]
    assert explainer.lag_months == 2 and explainer.correlation > 0.9
    assert budget.closure < 0.1


def test_anomaly_before_onset_with_member_bootstrap() -> None:
    """Frozen members get +2 mSv more Greenland runoff over the 5 years before onset."""
    base, _ = _flux(20.0, 10.0)
    extra = np.zeros_like(base)
    for member, year in FROZEN.items():
        extra[member, (year - 6) * 12 : (year - 1) * 12] = 2.0  # model year 1 is index 0
    rng = np.random.default_rng(1)
    runoff = base + extra + rng.normal(0, 0.5, base.shape)
    content = np.cumsum(runoff, axis=1) * MONTH_S * 1e3
    table = _table(
        {
            "friver_west_greenland_shelf": runoff,
            "ficeberg_labsea": 0 * runoff,
            "pr_labsea": 30 + rng.normal(0, 0.5, base.shape),
        },
        content,
    )
    budget = freshwater_budget(table, _labels(table), settings=SETTINGS)
    g = _term(budget, "greenland_runoff").anomaly
    assert g.anomaly_msv == pytest.approx(2.0, abs=0.3)
    assert g.anomaly_ci[0] > 0.5 and g.anomaly_ci[0] < 2.0 < g.anomaly_ci[1]
    p = _term(budget, "precipitation").anomaly
    assert p.anomaly_ci[0] < 0 < p.anomaly_ci[1]
    assert budget.ranking()[0].source == "greenland_runoff"
    assert budget.n_frozen == len(FROZEN)


def test_a_censored_member_is_no_comparison_once_its_record_cannot_rule_out_a_freeze() -> None:
    """Member 15's record ends in year 28 with frozen winters too few to label: it may freeze
    from then on, so it cannot stand for "not frozen within 5 years" of onsets from year 23.

    It carries +10 mSv: used as a comparison it would pull every frozen anomaly down.
    """
    rng = np.random.default_rng(2)
    runoff = 20.0 + rng.normal(0, 0.5, (MEMBERS, YEARS * 12))
    runoff[15] += 10.0
    table = _table(
        {"friver_west_greenland_shelf": runoff, "ficeberg_labsea": 0 * runoff},
        np.cumsum(runoff, axis=1) * MONTH_S * 1e3,
    )
    censored = freshwater_budget(table, _labels(table, {15: "0028-01"}), settings=SETTINGS)
    without = freshwater_budget(
        table.isel(member=slice(0, 15)), _labels(table.isel(member=slice(0, 15))), settings=SETTINGS
    )
    plain = freshwater_budget(table, _labels(table), settings=SETTINGS)
    got = _term(censored, "greenland_runoff").anomaly.anomaly_msv
    assert got == pytest.approx(_term(without, "greenland_runoff").anomaly.anomaly_msv, abs=1e-9)
    assert _term(plain, "greenland_runoff").anomaly.anomaly_msv < got - 0.5
    assert any(n.startswith(f"{len(FROZEN)} comparison(s)") for n in censored.notes)
    assert not any("censored" in n for n in plain.notes)


def test_a_term_that_cannot_be_computed_is_named_with_what_it_lacks() -> None:
    flux, content = _flux(5.0, 1.0)
    table = _table({"pr_labsea": flux}, content)
    budget = freshwater_budget(table, _labels(table), settings=SETTINGS)
    assert not budget.complete
    davis = _term(budget, "arctic_outflow")
    assert not davis.computable and "umo/vmo" in davis.lacks and "Davis" in davis.lacks
    assert "dvidtd" in _term(budget, "sea_ice_import").lacks
    assert any("entrainment" in u for u in budget.unmeasured)


def test_ice_melt_without_the_import_says_it_carries_it() -> None:
    flux, content = _flux(2.0, 3.0)
    table = _table({"fsitherm_labsea": flux}, content)
    budget = freshwater_budget(table, _labels(table), settings=SETTINGS)
    assert _term(budget, "sea_ice_melt").includes == ["sea_ice_import"]


def test_no_salinity_no_tendency_but_terms_remain() -> None:
    flux, content = _flux(5.0, 1.0)
    table = _table({"pr_labsea": flux}, content).drop_vars("so_upper_labsea")
    budget = freshwater_budget(table, _labels(table), settings=SETTINGS)
    assert budget.tendency is None and budget.closure is None
    assert _term(budget, "precipitation").computable
    assert any("so_upper_labsea" in n for n in budget.notes)


def test_the_area_comes_from_the_settings_then_the_ocean_grid_then_the_boxes() -> None:
    flux, content = _flux(5.0, 1.0)
    table = _table({"pr_labsea": flux}, content)
    default = BudgetSettings(n_boot=50)
    assert "no ocean grid" in freshwater_budget(table, _labels(table), settings=default).area_source
    table.attrs.update(
        labsea_ocean_area_m2=AREA, labsea_ocean_area_m2_source="labsea ocean cells of the grid"
    )
    budget = freshwater_budget(table, _labels(table), settings=default)
    assert budget.area_m2 == AREA and budget.area_source == "labsea ocean cells of the grid"
    assert budget.closure < 0.1  # the content was built with AREA: the grid's area closes it
    given = freshwater_budget(
        table, _labels(table), settings=SETTINGS.model_copy(update={"area_m2": 2 * AREA})
    )
    assert given.area_m2 == 2 * AREA and given.area_source == "given in the budget settings"


def test_the_models_see_local_melt_apart_from_the_imported_ice() -> None:
    """The ice-ocean flux less the import (as the budget counts it) replaces the flux
    features the models see; without an import measured, nothing changes."""
    from detectors.budget.content import ice_counted_once

    imported, content_i = _flux(3.0, 3.0)
    local, content_l = _flux(-1.0, 5.0)
    table = _table(
        {
            "dvidtd_labsea": imported / ICE_FRESH,
            "fsitherm_labsea": imported + local,
            "fresh_labsea": 0.97 * (imported + local),
        },
        content_i + content_l,
    )
    counted, note = ice_counted_once(table, S_REF)
    np.testing.assert_allclose(counted["fsitherm_labsea"].values, local, atol=1e-9)
    np.testing.assert_allclose(
        counted["fresh_labsea"].values, 0.97 * (imported + local) - imported, atol=1e-9
    )
    assert "dvidtd_labsea" in counted["fsitherm_labsea"].attrs["counted_once"]
    assert "fresh_labsea" in note and "fsitherm_labsea" in note
    np.testing.assert_array_equal(counted["dvidtd_labsea"], table["dvidtd_labsea"])
    np.testing.assert_array_equal(table["fsitherm_labsea"].values, imported + local)  # a copy
    alone, none = ice_counted_once(table.drop_vars("dvidtd_labsea"), S_REF)
    assert none is None and alone["fsitherm_labsea"].identical(table["fsitherm_labsea"])
