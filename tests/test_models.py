"""Every registered model learns a planted precursor; fits are reproducible; device fallback.

The data are synthetic windows of 30 "members" (20 windows each): for summaries the freeze
depends on 2 of 20 features, for sequences on the mean of one channel over the last 6 months
of the window. Half of the members train, the other half score, as in grouped CV.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from detectors import models as registry
from detectors.models import (
    ModelSpec,
    TorchClassifier,
    TrainingConfig,
    get_model,
    grouped_folds,
    models,
    pick_device,
    validation_split,
)
from ensembles.errors import ConfigurationError

N_MEMBERS, WINDOWS = 30, 20
PLANTED = (3, 11)  # summary features the label depends on
CHANNEL, LAST = 1, 6  # sequence channel and trailing months the label depends on
LEARNED = [s.name for s in models() if s.family in ("torch", "sklearn")]


def planted_summary(seed: int = 0, p: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, groups): the log-odds of a freeze are 2.5 (x3 - x11) - 1."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_MEMBERS * WINDOWS, p))
    logit = 2.5 * (X[:, PLANTED[0]] - X[:, PLANTED[1]]) - 1.0
    y = (rng.random(len(X)) < expit(logit)).astype(int)
    return X, y, np.repeat(np.arange(N_MEMBERS), WINDOWS)


def planted_sequence(seed: int = 0, channels: int = 4,
                     length: int = 24) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, groups): a freeze follows a high channel-1 mean over the last 6 months."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_MEMBERS * WINDOWS, channels, length))
    recent = X[:, CHANNEL, -LAST:].mean(axis=1)
    y = (recent + 0.1 * rng.normal(size=len(X)) > 0.2).astype(int)
    return X, y, np.repeat(np.arange(N_MEMBERS), WINDOWS)


DATA = {"summary": planted_summary, "sequence": planted_sequence}


def halves(X: np.ndarray, y: np.ndarray, groups: np.ndarray):
    """Members 0-14 train, 15-29 test."""
    train = groups < N_MEMBERS // 2
    return (X[train], y[train], groups[train]), (X[~train], y[~train])


def test_registry_has_the_fixed_names() -> None:
    assert {"mlp", "cnn", "logistic", "gbm"} <= {s.name for s in models()}
    assert [s.name for s in models("sequence")] == ["cnn"]
    assert {s.name for s in models("summary")} >= {"mlp", "logistic", "gbm"}
    assert get_model("mlp").family == "torch" and get_model("gbm").family == "sklearn"


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(ConfigurationError, match=r"'lstm'.*cnn, gbm, logistic, mlp"):
        get_model("lstm")
    with pytest.raises(ConfigurationError, match="input kind"):
        models("image")


def test_baselines_register_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    spec = ModelSpec("model_year", "scalar", "baseline", "model year alone",
                     lambda seed=0: get_model("logistic").build(seed=seed))
    assert registry.register(spec) is spec
    assert get_model("model_year") is spec and models("scalar") == [spec]
    with pytest.raises(ConfigurationError, match="already registered"):
        registry.register(spec)
    with pytest.raises(ConfigurationError, match="input must be"):
        registry.register(ModelSpec("x", "image", "baseline", "", spec.build))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", LEARNED)
def test_model_learns_planted_signal(name: str) -> None:
    spec = get_model(name)
    (X, y, groups), (X_test, y_test) = halves(*DATA[spec.input]())
    model = spec.build(seed=0).fit(X, y, groups=groups)
    proba = model.predict_proba(X_test)
    assert proba.shape == (len(X_test),) and ((proba >= 0) & (proba <= 1)).all()
    assert roc_auc_score(y_test, proba) > 0.8


@pytest.mark.parametrize("name", LEARNED)
def test_same_seed_same_predictions(name: str) -> None:
    spec = get_model(name)
    (X, y, groups), _ = halves(*DATA[spec.input](seed=1))
    first = spec.build(seed=3).fit(X, y, groups=groups).predict_proba(X)
    second = spec.build(seed=3).fit(X, y, groups=groups).predict_proba(X)
    np.testing.assert_array_equal(first, second)


def test_torch_training_stops_early_and_restores_best() -> None:
    X, y, groups = planted_summary()
    model = get_model("mlp").build(seed=0).fit(X, y, groups=groups)
    history = model.history_
    assert history["epochs"] < model.training.max_epochs
    assert history["best_epoch"] <= history["epochs"] - model.training.patience
    assert history["n_train"] + history["n_validation"] == len(X)


def test_fit_leaves_global_torch_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    X, y, groups = planted_summary()
    get_model("mlp").build(seed=0).fit(X, y, groups=groups)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.allow_tf32


@pytest.mark.parametrize("length", [3, 10, 24, 37])
def test_cnn_takes_any_window_length(length: int) -> None:
    X, y, groups = planted_sequence(channels=2, length=length)
    model = get_model("cnn").build(seed=0, training=TrainingConfig(max_epochs=2))
    assert model.fit(X, y, groups=groups).predict_proba(X).shape == (len(X),)


def test_validation_split_holds_out_whole_members() -> None:
    _, y, groups = planted_summary()
    train, valid = validation_split(y, groups, seed=0)
    assert not set(groups[train]) & set(groups[valid])
    assert 0.1 < len(set(groups[valid])) / N_MEMBERS < 0.3
    assert len(grouped_folds(y, groups, n_splits=5)) == 5


def test_few_members_fall_back_to_a_plain_split() -> None:
    _, y, _ = planted_summary()
    train, valid = validation_split(y, np.repeat([0, 1], len(y) // 2), seed=0)
    assert len(train) + len(valid) == len(y) and 0.15 < len(valid) / len(y) < 0.25


@pytest.mark.parametrize("name", LEARNED)
def test_a_single_frozen_member_is_enough(name: str) -> None:
    (X, y, groups), _ = halves(*DATA[get_model(name).input]())
    y = (groups == 0).astype(int)  # the only positive member must stay in the training part
    proba = get_model(name).build(seed=0).fit(X, y, groups=groups).predict_proba(X)
    assert np.isfinite(proba).all()


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (np.full((10, 3), np.nan), np.r_[np.zeros(5), np.ones(5)], "NaN"),
        (np.zeros((10, 3, 4)), np.r_[np.zeros(5), np.ones(5)], "2 dimensions"),
        (np.zeros((10, 3)), np.zeros(10), "at least 2 samples of each class"),
        (np.zeros((10, 3)), np.arange(10), "0 .* or 1"),
    ],
)
def test_bad_training_data_is_refused(X: np.ndarray, y: np.ndarray, match: str) -> None:
    for name in ("mlp", "logistic", "gbm"):
        with pytest.raises(ConfigurationError, match=match):
            get_model(name).build().fit(X, y)


def test_untrained_model_says_so() -> None:
    with pytest.raises(ConfigurationError, match="not trained"):
        TorchClassifier("cnn", device="cpu").predict_proba(np.zeros((2, 3, 4)))


def test_device_falls_back_to_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ESMWATCH_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    assert TorchClassifier("mlp").device == torch.device("cpu")


def test_device_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("ESMWATCH_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")
    monkeypatch.setenv("ESMWATCH_DEVICE", "cuda")
    with pytest.raises(ConfigurationError, match="CUDA is not available"):
        pick_device()
    monkeypatch.setenv("ESMWATCH_DEVICE", "abacus")
    with pytest.raises(ConfigurationError, match="not a torch device"):
        pick_device()
