"""Classifiers that learn freeze precursors, and the registry that names them.

Every model is a small plain :class:`ModelSpec` (name, input kind, family, description,
factory), kept in one master registry from which every filtered list derives, the way
climpred keeps its metrics. The names are fixed strings that appear in result.json
(``mlp``, ``cnn``, ``logistic``, ``gbm``); baselines are added with :func:`register`.

All classifiers work on plain numpy arrays and share one small protocol: ``fit(X, y,
groups=...)`` and ``predict_proba(X)`` returning P(freeze). ``groups`` are member ids: samples
of one member are strongly correlated, so every internal held-out split (early stopping,
choice of regularisation) holds out whole members, never single windows.

The models are chosen so that their SHAP values are *exact* (see :mod:`detectors.explain`):
torch networks use only layers that SHAP's DeepExplainer handles (no RNN, no in-place
operation, every non-linearity an ``nn.ReLU`` module of its own), gradient boosting is
scikit-learn's ``GradientBoostingClassifier`` (shap 0.51's interventional TreeExplainer is not
additive on ``HistGradientBoostingClassifier``), and the logistic regression exposes its
coefficients in raw feature units.

Class imbalance (few frozen windows) is handled by weighting the positive class, so the
probabilities rank well but are not calibrated; the risk model is calibrated separately.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from scipy.special import expit
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.utils.class_weight import compute_sample_weight
from torch import nn

from ensembles.errors import ConfigurationError

log = logging.getLogger(__name__)

InputKind = Literal["summary", "sequence", "scalar"]
Family = Literal["torch", "sklearn", "baseline"]
INPUT_NDIM: dict[str, int] = {"summary": 2, "sequence": 3, "scalar": 1}
DEVICE_ENV = "ESMWATCH_DEVICE"


@runtime_checkable
class Classifier(Protocol):
    """What the cross-validation loop needs from any model, baselines included."""

    def fit(
        self, X: np.ndarray, y: np.ndarray, *, groups: np.ndarray | None = None
    ) -> Classifier: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class MarginClassifier(Classifier, Protocol):
    """A classifier whose log-odds are available, the space its SHAP values live in."""

    def decision_function(self, X: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ModelSpec:
    """A model's name and how to build it; ``build(seed=..., **hyper)`` returns an unfit model.

    ``input`` says which array the sample builder must hand over: ``summary`` (n × p window
    summaries), ``sequence`` (n × channels × length) or ``scalar`` (n,).
    """

    name: str
    input: InputKind
    family: Family
    description: str
    build: Callable[..., Classifier]


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add a model to the registry (baselines are registered this way by their module).

    Raises
    ------
    ConfigurationError
        When the name is taken (pass ``replace=True`` to overwrite deliberately) or the input
        kind is unknown.
    """
    if spec.input not in INPUT_NDIM:
        raise ConfigurationError(
            f"model {spec.name!r}: input must be one of {sorted(INPUT_NDIM)}, not {spec.input!r}")
    if spec.name in _REGISTRY and not replace:
        raise ConfigurationError(f"a model named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_model(name: str | ModelSpec) -> ModelSpec:
    """Look a model up by name; a :class:`ModelSpec` is passed through unchanged."""
    if isinstance(name, ModelSpec):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}") from None


def models(input: str | None = None) -> list[ModelSpec]:
    """Every registered model, or those taking one input kind, in registration order."""
    if input is not None and input not in INPUT_NDIM:
        raise ConfigurationError(
            f"unknown input kind {input!r}; expected one of {sorted(INPUT_NDIM)}")
    return [s for s in _REGISTRY.values() if input is None or s.input == input]


def pick_device() -> torch.device:
    """CUDA when available, else CPU; ``ESMWATCH_DEVICE`` (e.g. ``cpu``, ``cuda:1``) overrides.

    Raises
    ------
    ConfigurationError
        When the override names no torch device, or CUDA that this machine does not have.
    """
    requested = os.environ.get(DEVICE_ENV, "").strip()
    if not requested:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as err:
        raise ConfigurationError(f"{DEVICE_ENV}={requested!r} is not a torch device") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(f"{DEVICE_ENV}={requested!r} but CUDA is not available here")
    return device


# --------------------------------------------------------------------------- input checks


def check_inputs(X: np.ndarray, input: str, name: str) -> np.ndarray:
    """``X`` as float64 of the rank the input kind needs, every value finite."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != INPUT_NDIM[input]:
        raise ConfigurationError(
            f"model {name!r} takes {input} input of {INPUT_NDIM[input]} dimensions, "
            f"got an array of shape {X.shape}")
    if not np.isfinite(X).all():
        raise ConfigurationError(
            f"model {name!r}: {int((~np.isfinite(X)).sum())} input values are NaN or infinite")
    return X


def _check_labels(y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,):
        raise ConfigurationError(f"labels have shape {y.shape}, expected ({n},)")
    if not np.isin(y, (0, 1)).all():
        raise ConfigurationError("labels must be 0 (no freeze) or 1 (freeze)")
    counts = np.bincount(y.astype(int), minlength=2)
    if counts.min() < 2:
        raise ConfigurationError(
            f"need at least 2 samples of each class to train, got {counts[0]} negative and "
            f"{counts[1]} positive")
    return y.astype(int)


# ------------------------------------------------------------------------- grouped splits


def grouped_folds(
    y: np.ndarray, groups: np.ndarray | None, *, n_splits: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds that keep each member (group) whole, each able to train a model.

    Windows of one member are nearly copies of each other, so a split that separates them
    would score the model on its own training data. With fewer than 3 members there is no
    sensible grouped split, and a plain stratified split is used instead (logged). A fold
    whose training part lacks a class (the only frozen member held out) is dropped.

    Raises
    ------
    ConfigurationError
        When no fold leaves both classes to train on.
    """
    n_groups = 0 if groups is None else len(np.unique(groups))
    index = np.zeros(len(y))
    if n_groups >= 3:
        k = min(n_splits, n_groups)
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        folds = list(splitter.split(index, y, groups))
    else:
        if groups is not None:
            log.warning("only %d member(s): held-out split is not grouped", n_groups)
        k = min(n_splits, int(np.bincount(y).min()))
        folds = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(index, y))
    usable = [(train, valid) for train, valid in folds if len(np.unique(y[train])) == 2]
    if not usable:
        raise ConfigurationError("no held-out split of the members leaves both classes to train")
    return usable


def validation_split(
    y: np.ndarray, groups: np.ndarray | None, *, fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices, holding out about ``fraction`` of the members."""
    return grouped_folds(y, groups, n_splits=max(2, round(1 / fraction)), seed=seed)[0]


# ------------------------------------------------------------------------- torch networks


def _mlp(input_shape: tuple[int, ...], *, hidden: tuple[int, ...] = (32, 16),
         dropout: float = 0.2) -> nn.Sequential:
    """p → 32 → 16 → 1 logit; each ReLU is its own module so DeepExplainer can hook it."""
    (width,) = input_shape
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def _cnn(input_shape: tuple[int, ...], *, filters: int = 16, kernel_size: int = 5,
         time_bins: int = 4, dropout: float = 0.2) -> nn.Sequential:
    """Two convolutions, then average pooling into a few time bins, then a linear logit.

    Pooling into ``time_bins`` bins rather than one global average keeps *when* in the window
    something happens (the last months before the lead matter most), with a parameter count
    that does not depend on the window length. ``AvgPool1d`` rather than
    ``AdaptiveAvgPool1d``: the latter's CUDA backward pass is not deterministic.
    """
    channels, length = input_shape
    width = math.ceil(length / time_bins)
    return nn.Sequential(
        nn.Conv1d(channels, filters, kernel_size, padding="same"),
        nn.ReLU(),
        nn.Conv1d(filters, filters, kernel_size, padding="same"),
        nn.ReLU(),
        nn.AvgPool1d(width, stride=width, ceil_mode=True),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(filters * math.ceil(length / width), 1),
    )


@dataclass(frozen=True)
class Architecture:
    """A torch network family: its input kind and a factory ``(input_shape, **params)``."""

    name: str
    input: InputKind
    build: Callable[..., nn.Module]


ARCHITECTURES: dict[str, Architecture] = {
    "mlp": Architecture("mlp", "summary", _mlp),
    "cnn": Architecture("cnn", "sequence", _cnn),
}


@dataclass(frozen=True)
class TrainingConfig:
    """Optimiser and early-stopping settings, saved with every model.

    Mini-batches of 256 keep a fit on a few thousand samples well under two seconds on two
    CPU cores; early stopping (``patience`` epochs without a better validation loss) bounds
    the epochs far below ``max_epochs`` in practice. The strong weight decay (an L2 penalty
    in Adam) suits a few hundred samples of up to ~200 mostly uninformative features: with
    1000 samples of 100 features, 2 informative, it raised the held-out AUC from 0.82 (1e-4)
    to 0.90.
    """

    learning_rate: float = 3e-3
    weight_decay: float = 3e-2
    max_epochs: int = 200
    patience: int = 20
    batch_size: int = 256
    validation_fraction: float = 0.2
    cpu_threads: int | None = 1


@contextlib.contextmanager
def torch_numerics(cpu_threads: int | None) -> Iterator[None]:
    """Full float32 precision and a fixed CPU thread count for torch, restored afterwards.

    The networks here are tiny, so intra-op parallelism gains nothing, while on a loaded
    machine (CI, a worker running other jobs) two spinning OpenMP threads made a 0.2 s fit
    take 10-20 s: one thread is both the fastest and the most predictable choice (``None``
    leaves the setting alone). TF32 convolutions (cuDNN's default on recent GPUs) moved the
    CNN's CUDA logits ~3e-3 away from the float64 network that SHAP explains; for networks
    this small they buy no speed, so they are switched off.
    """
    previous = torch.get_num_threads(), torch.backends.cudnn.allow_tf32
    if cpu_threads is not None:
        torch.set_num_threads(cpu_threads)
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_num_threads(previous[0])
        torch.backends.cudnn.allow_tf32 = previous[1]


@contextlib.contextmanager
def _reproducible(seed: int, device: torch.device, threads: int | None) -> Iterator[None]:
    """Seed torch and ask for deterministic kernels, restoring the caller's state afterwards."""
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch_numerics(threads), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def _train(network: nn.Module, train: tuple[torch.Tensor, torch.Tensor],
           valid: tuple[torch.Tensor, torch.Tensor], config: TrainingConfig,
           generator: torch.Generator) -> dict[str, Any]:
    """The one training loop: weighted BCE, Adam, early stopping on the validation loss.

    The best weights seen on validation are restored at the end. Returns the history that is
    saved with the model (epochs run, best epoch, best validation loss).
    """
    x, y = train
    positives = float(y.sum())
    pos_weight = torch.tensor((len(y) - positives) / max(positives, 1.0), device=y.device)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    optimiser = torch.optim.Adam(network.parameters(), lr=config.learning_rate,
                                 weight_decay=config.weight_decay)
    best_loss, best_epoch, best_state = float("inf"), 0, copy.deepcopy(network.state_dict())
    epoch = 0
    for epoch in range(1, config.max_epochs + 1):
        network.train()
        for batch in torch.randperm(len(y), generator=generator).split(config.batch_size):
            rows = batch.to(y.device)
            optimiser.zero_grad()
            loss_fn(network(x[rows]).squeeze(1), y[rows]).backward()
            optimiser.step()
        network.eval()
        with torch.no_grad():
            loss = loss_fn(network(valid[0]).squeeze(1), valid[1]).item()
        if loss < best_loss - 1e-6:
            best_loss, best_epoch, best_state = loss, epoch, copy.deepcopy(network.state_dict())
        elif epoch - best_epoch >= config.patience:
            break
    network.load_state_dict(best_state)
    network.eval()
    log.debug("trained %d epochs, best validation loss %.4f at epoch %d",
              epoch, best_loss, best_epoch)
    return {"epochs": epoch, "best_epoch": best_epoch, "best_validation_loss": best_loss}


class TorchClassifier:
    """A torch network trained with the shared loop; ``network`` maps inputs to the logit.

    Inputs are standardised before they reach ``network`` (per feature for summaries, per
    channel over samples and lags for sequences, so the shape of a sequence in time is
    kept), with the training split's mean and std held in ``mean_`` and ``std_``.
    ``network`` therefore maps :meth:`standardise` (X) to the log-odds of a freeze. A
    per-feature affine map does not change SHAP values, so explanations of ``network`` on
    standardised inputs are explanations of the model on raw inputs.

    Parameters
    ----------
    architecture
        Key of :data:`ARCHITECTURES` (``mlp`` or ``cnn``).
    seed
        Seeds weights, dropout, shuffling and the validation split: two fits on the same data
        give the same predictions.
    training
        Optimiser and early-stopping settings.
    device
        Where to train; :func:`pick_device` when omitted.
    **params
        Architecture hyper-parameters (e.g. ``hidden=(64, 32)``), saved with the model.
    """

    def __init__(self, architecture: str, *, seed: int = 0, training: TrainingConfig | None = None,
                 device: torch.device | str | None = None, **params: Any) -> None:
        if architecture not in ARCHITECTURES:
            raise ConfigurationError(
                f"unknown torch architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
        self.architecture = ARCHITECTURES[architecture]
        self.seed = seed
        self.training = training or TrainingConfig()
        self.device = torch.device(device) if device is not None else pick_device()
        self.params = params
        self.network: nn.Module | None = None
        self.input_shape: tuple[int, ...] = ()
        self.mean_ = np.zeros(0)
        self.std_ = np.ones(0)
        self.history_: dict[str, Any] = {}

    def hyperparameters(self) -> dict[str, Any]:
        """Everything needed to rebuild the untrained network (JSON-ready)."""
        return {"architecture": self.architecture.name, "seed": self.seed,
                "params": self.params, "training": asdict(self.training),
                "input_shape": list(self.input_shape)}

    def initialise(self, input_shape: tuple[int, ...], mean: np.ndarray,
                   std: np.ndarray) -> nn.Module:
        """Build a fresh network for one input shape with its standardisation."""
        self.input_shape = tuple(int(s) for s in input_shape)
        self.mean_, self.std_ = np.asarray(mean, np.float64), np.asarray(std, np.float64)
        self.network = self.architecture.build(self.input_shape, **self.params).to(self.device)
        return self.network

    def fit(self, X: np.ndarray, y: np.ndarray, *,
            groups: np.ndarray | None = None) -> TorchClassifier:
        """Train on all members but a held-out ~20% used for early stopping."""
        X = check_inputs(X, self.architecture.input, self.architecture.name)
        y = _check_labels(y, len(X))
        train, valid = validation_split(y, groups, fraction=self.training.validation_fraction,
                                        seed=self.seed)
        with _reproducible(self.seed, self.device, self.training.cpu_threads):
            self.initialise(X.shape[1:], *_moments(X[train]))
            generator = torch.Generator().manual_seed(self.seed)
            self.history_ = _train(self.require_network(), self._tensors(X[train], y[train]),
                                   self._tensors(X[valid], y[valid]), self.training, generator)
        self.history_.update(n_train=len(train), n_validation=len(valid))
        return self

    def standardise(self, X: np.ndarray) -> np.ndarray:
        """Raw inputs → the standardised inputs ``network`` takes (float64)."""
        self.require_network()
        X = check_inputs(X, self.architecture.input, self.architecture.name)
        if X.shape[1:] != self.input_shape:
            raise ConfigurationError(
                f"model was trained on inputs of shape {self.input_shape}, got {X.shape[1:]}")
        return (X - self.mean_) / self.std_

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Log-odds of a freeze, shape (n,), computed in eval mode without gradients."""
        network = self.require_network()
        network.eval()
        x = torch.as_tensor(self.standardise(X), dtype=torch.float32)
        with torch_numerics(self.training.cpu_threads), torch.no_grad():
            chunks = [network(part.to(self.device)).squeeze(1).cpu() for part in x.split(4096)]
        return torch.cat(chunks).numpy().astype(np.float64)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(freeze), shape (n,); ranks well, calibrated only after a calibration step."""
        return expit(self.decision_function(X))

    def _tensors(self, X: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.as_tensor(self.standardise(X), dtype=torch.float32, device=self.device)
        return x, torch.as_tensor(y, dtype=torch.float32, device=self.device)

    def require_network(self) -> nn.Module:
        """The trained logit network (what DeepExplainer and the artifact writer use)."""
        if self.network is None:
            raise ConfigurationError(f"{self.architecture.name} model is not trained yet")
        return self.network


def _moments(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per feature (2-D) or per channel over samples and lags (3-D)."""
    axes = (0,) if X.ndim == 2 else (0, 2)
    mean = X.mean(axis=axes, keepdims=True)[0]
    std = X.std(axis=axes, keepdims=True)[0]
    return mean, np.where(std > 0, std, 1.0)


# ---------------------------------------------------------------------- scikit-learn models


@dataclass
class LogisticClassifier:
    """L2 logistic regression on standardised summaries, strength chosen on held-out members.

    ``coef_`` and ``intercept_`` are given in raw feature units (the scaling folded in), so the
    model is ``logit = X @ coef_ + intercept_`` and its SHAP values are exact and closed-form.
    The strength is chosen here, by the class-weighted log loss over grouped folds, rather
    than with ``LogisticRegressionCV``, whose arguments change between scikit-learn releases.
    """

    seed: int = 0
    strengths: tuple[float, ...] = (1e-2, 1e-1, 1.0, 10.0)
    max_iter: int = 1000
    coef_: np.ndarray | None = field(default=None, init=False)
    intercept_: float = field(default=0.0, init=False)
    strength_: float = field(default=float("nan"), init=False)

    def fit(self, X: np.ndarray, y: np.ndarray, *,
            groups: np.ndarray | None = None) -> LogisticClassifier:
        """Standardise, choose C on grouped folds (balanced class weights), refit on all."""
        X = check_inputs(X, "summary", "logistic")
        y = _check_labels(y, len(X))
        mean, std = _moments(X)
        Z = (X - mean) / std
        folds = grouped_folds(y, groups, seed=self.seed)
        weight = compute_sample_weight("balanced", y)
        losses = [self._held_out_loss(c, Z, y, weight, folds) for c in self.strengths]
        self.strength_ = self.strengths[int(np.argmin(losses))]
        model = self._regression(self.strength_).fit(Z, y)
        self.coef_ = model.coef_[0] / std
        self.intercept_ = float(model.intercept_[0] - self.coef_ @ mean)
        return self

    def _held_out_loss(self, strength: float, Z: np.ndarray, y: np.ndarray, weight: np.ndarray,
                       folds: list[tuple[np.ndarray, np.ndarray]]) -> float:
        """Class-weighted log loss of one strength, pooled over the held-out folds."""
        total = 0.0
        for train, valid in folds:
            model = self._regression(strength).fit(Z[train], y[train])
            total += log_loss(y[valid], model.predict_proba(Z[valid])[:, 1],
                              sample_weight=weight[valid], labels=[0, 1]) * weight[valid].sum()
        return total

    def _regression(self, strength: float) -> LogisticRegression:
        return LogisticRegression(C=strength, class_weight="balanced", max_iter=self.max_iter)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Log-odds of a freeze, shape (n,)."""
        if self.coef_ is None:
            raise ConfigurationError("logistic model is not trained yet")
        return check_inputs(X, "summary", "logistic") @ self.coef_ + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(freeze), shape (n,)."""
        return expit(self.decision_function(X))


@dataclass
class GBMClassifier:
    """Gradient-boosted trees; the number of trees is early-stopped on held-out members.

    The number of trees is chosen on a grouped validation split (weighted log loss per
    boosting stage), then the model is refit on every sample with that many trees, so no
    data are lost to early stopping. ``GradientBoostingClassifier`` rather than the
    histogram variant because shap's interventional TreeExplainer is exact on it.
    """

    seed: int = 0
    max_trees: int = 100
    learning_rate: float = 0.15
    max_depth: int = 3
    subsample: float = 0.8
    max_features: str | float = "sqrt"
    min_samples_leaf: int = 5
    model_: GradientBoostingClassifier | None = field(default=None, init=False)

    def fit(self, X: np.ndarray, y: np.ndarray, *,
            groups: np.ndarray | None = None) -> GBMClassifier:
        """Pick the number of trees on held-out members, then refit on all samples."""
        X = check_inputs(X, "summary", "gbm")
        y = _check_labels(y, len(X))
        weight = compute_sample_weight("balanced", y)
        train, valid = validation_split(y, groups, seed=self.seed)
        probe = self._boosting(self.max_trees).fit(X[train], y[train], sample_weight=weight[train])
        losses = [log_loss(y[valid], expit(margin), sample_weight=weight[valid], labels=[0, 1])
                  for margin in probe.staged_decision_function(X[valid])]
        n_trees = int(np.argmin(losses)) + 1
        log.debug("gbm: %d trees chosen on %d validation samples", n_trees, len(valid))
        self.model_ = self._boosting(n_trees).fit(X, y, sample_weight=weight)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Raw boosting margin = log-odds of a freeze, shape (n,)."""
        return self.require_model().decision_function(check_inputs(X, "summary", "gbm"))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(freeze), shape (n,)."""
        return expit(self.decision_function(X))

    def require_model(self) -> GradientBoostingClassifier:
        """The fitted scikit-learn model (what TreeExplainer walks)."""
        if self.model_ is None:
            raise ConfigurationError("gbm model is not trained yet")
        return self.model_

    def _boosting(self, n_trees: int) -> GradientBoostingClassifier:
        return GradientBoostingClassifier(
            n_estimators=n_trees, learning_rate=self.learning_rate, max_depth=self.max_depth,
            subsample=self.subsample, max_features=self.max_features,
            min_samples_leaf=self.min_samples_leaf, random_state=self.seed)


register(ModelSpec("mlp", "summary", "torch",
                   "multi-layer perceptron (p→32→16→1, ReLU, dropout) on window summaries",
                   functools.partial(TorchClassifier, "mlp")))
register(ModelSpec("cnn", "sequence", "torch",
                   "1-D CNN (2 convolutions, pooling into 4 time bins) on monthly sequences",
                   # sequences carry more inputs per sample: fewer, shorter epochs suffice
                   functools.partial(TorchClassifier, "cnn",
                                     training=TrainingConfig(max_epochs=100, patience=10))))
register(ModelSpec("logistic", "summary", "sklearn",
                   "L2 logistic regression, strength chosen on held-out members",
                   LogisticClassifier))
register(ModelSpec("gbm", "summary", "sklearn",
                   "gradient-boosted trees, number of trees early-stopped on held-out members",
                   GBMClassifier))
