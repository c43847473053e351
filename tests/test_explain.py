"""SHAP explanations: exact additivity in log-odds, planted precursors ranked first."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.explain import Explanation, additivity_error, explain, kernel_crosscheck
from detectors.models import Classifier, get_model
from ensembles.errors import ConfigurationError
from tests.test_models import CHANNEL, DATA, LAST, LEARNED, PLANTED

EXPLAINER = {"mlp": "deep", "cnn": "deep", "gbm": "tree", "logistic": "linear"}


@pytest.fixture(scope="module")
def trained() -> dict[str, tuple[Classifier, np.ndarray]]:
    """Each learned model fitted once on its planted data set, with that data set."""
    fitted = {}
    for name in LEARNED:
        X, y, groups = DATA[get_model(name).input]()
        fitted[name] = (get_model(name).build(seed=0).fit(X, y, groups=groups), X)
    return fitted


@pytest.fixture(scope="module")
def explanations(trained) -> dict[str, Explanation]:
    """Explanations of 100 samples against a background of 100 others."""
    return {name: explain(model, name, X[:100], X[-100:]) for name, (model, X) in trained.items()}


@pytest.mark.parametrize("name", LEARNED)
def test_values_add_up_to_the_log_odds(name: str, trained, explanations) -> None:
    model, X = trained[name]
    expl = explanations[name]
    assert expl.values.shape == X[-100:].shape
    assert expl.explainer == EXPLAINER[name] and expl.space == "log-odds"
    assert additivity_error(expl) < 1e-5
    # the output is the model's own log-odds (float32 network vs its float64 copy for torch)
    np.testing.assert_allclose(expl.output, model.decision_function(X[-100:]), atol=1e-4)


@pytest.mark.parametrize("name", LEARNED)
def test_expected_value_is_the_mean_background_log_odds(name: str, trained) -> None:
    model, X = trained[name]
    expl = explain(model, name, X[:50], X[-5:], max_background=None)
    assert expl.expected_value == pytest.approx(model.decision_function(X[:50]).mean(), abs=1e-5)


def test_deep_explainer_is_exact_in_float64(explanations) -> None:
    assert additivity_error(explanations["mlp"]) < 1e-9
    assert additivity_error(explanations["cnn"]) < 1e-9


def test_cnn_explanation_with_a_partial_last_time_bin() -> None:
    X, y, groups = DATA["sequence"](length=10)  # 4 bins of 3, 3, 3 and 1 months
    model = get_model("cnn").build(seed=0).fit(X, y, groups=groups)
    assert additivity_error(explain(model, "cnn", X[:50], X[-20:])) < 1e-9


@pytest.mark.parametrize("name", [n for n in LEARNED if get_model(n).input == "summary"])
def test_planted_features_rank_first(name: str, explanations) -> None:
    importance = np.abs(explanations[name].values).mean(axis=0)
    assert set(np.argsort(importance)[-2:]) == set(PLANTED)


def test_cnn_finds_the_planted_channel_and_months(explanations) -> None:
    importance = np.abs(explanations["cnn"].values).mean(axis=0)  # (channel, lag)
    assert np.argmax(importance.sum(axis=1)) == CHANNEL
    planted = importance[CHANNEL]
    assert planted[-LAST:].mean() > 3 * planted[:-LAST].mean()


def test_linear_explainer_is_the_closed_form(trained) -> None:
    model, X = trained["logistic"]
    expl = explain(model, "logistic", X[:200], X[-20:], max_background=None)
    expected = model.coef_ * (X[-20:] - X[:200].mean(axis=0))
    np.testing.assert_allclose(expl.values, expected, atol=1e-12)


def test_kernel_crosscheck_agrees_on_the_mlp(trained) -> None:
    model, X = trained["mlp"]
    check = kernel_crosscheck(model, "mlp", X[:300], X[300:], n_samples=20, n_background=20)
    assert check["n"] == 20 and check["n_background"] == 20
    assert check["explainer"] == "deep" and check["space"] == "log-odds"
    assert check["spearman_mean_abs"] > 0.8
    assert check["seconds_fast"] < check["seconds_kernel"]
    assert np.isfinite(check["max_abs_diff"])


def test_models_without_exact_explainer_are_refused(trained) -> None:
    class Constant:
        def fit(self, X, y, *, groups=None):
            return self

        def predict_proba(self, X):
            return np.full(len(X), 0.5)

    _, X = trained["logistic"]
    with pytest.raises(ConfigurationError, match="no exact SHAP explainer"):
        explain(Constant(), "logistic", X[:10], X[:5])


def test_wrong_input_rank_is_refused(trained) -> None:
    model, X = trained["cnn"]
    with pytest.raises(ConfigurationError, match="3 dimensions"):
        explain(model, "cnn", X[:10, 0], X[:5, 0])
