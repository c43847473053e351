"""Save and load trained torch classifiers without pickle.

A saved model is a directory with two files:

- ``weights.pt`` — the network's ``state_dict`` (tensors only), read back with
  ``torch.load(weights_only=True)`` so a tampered file cannot run code;
- ``model.json`` — everything else needed to rebuild and trust the model: architecture and its
  hyper-parameters, input shape, feature names (in input order), the standardisation mean and
  std, training history, software versions, creation time, and the caller's ``metadata``
  (training ensembles, leads, view, ...), kept under ``"metadata"``.

``model.json`` is written last, each file to a temporary name first and then renamed, so a
directory with a ``model.json`` always holds a complete model. scikit-learn models are not
saved here: the models that scans use (risk) are torch.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detectors.models import (
    ARCHITECTURES,
    ModelSpec,
    TorchClassifier,
    TrainingConfig,
    get_model,
)
from ensembles import __version__ as esmwatch_version
from ensembles.errors import ConfigurationError, InputFileError

FORMAT = "esmwatch-torch-classifier"
FORMAT_VERSION = 1
WEIGHTS = "weights.pt"
DOCUMENT = "model.json"


def save_model(model: TorchClassifier, spec: ModelSpec | str, directory: str | Path,
               metadata: dict[str, Any]) -> Path:
    """Write a trained torch classifier to ``directory`` (created if needed); return it.

    Parameters
    ----------
    model
        A trained :class:`~detectors.models.TorchClassifier`.
    spec
        Its registry entry or name, recorded as ``"model"``.
    directory
        Where ``weights.pt`` and ``model.json`` go; existing files are replaced.
    metadata
        JSON-serialisable provenance. Must hold ``"features"``: the input names in order (the
        summary features for ``mlp``, the channels for ``cnn``), which :func:`load_model`
        checks against what the caller is about to feed the model.

    Raises
    ------
    ConfigurationError
        For an untrained or non-torch model, missing or mis-sized feature names, or metadata
        that JSON cannot hold.
    """
    spec = get_model(spec)
    if not isinstance(model, TorchClassifier):
        raise ConfigurationError(f"only torch classifiers can be saved, not {spec.name!r}")
    network = model.require_network()
    text = _document_text(model, spec, metadata)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu() for key, value in network.state_dict().items()}
    _write_atomically(directory / WEIGHTS, lambda path: torch.save(state, path))
    _write_atomically(directory / DOCUMENT, lambda path: path.write_text(text))
    return directory


def load_model(directory: str | Path, expected_features: list[str] | None = None, *,
               expected_architecture: str | None = None,
               device: torch.device | str | None = None) -> tuple[TorchClassifier, dict[str, Any]]:
    """Rebuild a saved torch classifier; return it and the full ``model.json`` document.

    Parameters
    ----------
    directory
        A directory written by :func:`save_model`.
    expected_features
        The input names, in order, that the caller will feed; a model trained on anything else
        would silently score the wrong columns, so any difference is an error.
    expected_architecture
        Refuse a model of another architecture (e.g. ``"mlp"`` where a scan expects one).
    device
        Where the network goes; :func:`~detectors.models.pick_device` when omitted.

    Raises
    ------
    InputFileError
        When a file is missing, unreadable, of another format, or the weights do not fit the
        recorded architecture.
    ConfigurationError
        When the architecture or the features differ from what the caller expects; the message
        names the missing and the extra features.
    """
    directory = Path(directory)
    document = _read_document(directory / DOCUMENT)
    architecture = document["architecture"]
    if expected_architecture is not None and architecture != expected_architecture:
        raise ConfigurationError(
            f"{directory}: holds a {architecture!r} model, expected {expected_architecture!r}")
    if expected_features is not None:
        _check_features(directory, document["features"], list(expected_features))
    model = _rebuild(directory, document, device)
    network = model.require_network()
    weights = directory / WEIGHTS
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        network.load_state_dict(state)
    except FileNotFoundError:
        raise InputFileError(weights, "missing; the saved model is incomplete") from None
    except (RuntimeError, OSError, ValueError) as err:
        raise InputFileError(weights, f"cannot be loaded as {architecture} weights: {err}") from err
    network.eval()
    model.history_ = dict(document.get("history", {}))
    return model, document


def _document_text(model: TorchClassifier, spec: ModelSpec, metadata: dict[str, Any]) -> str:
    """model.json as text; fails before anything is written if it cannot be serialised."""
    features = metadata.get("features")
    n_inputs = model.input_shape[0]
    if (not isinstance(features, list | tuple) or len(features) != n_inputs
            or not all(isinstance(f, str) for f in features)):
        raise ConfigurationError(
            f"metadata['features'] must list the {n_inputs} input names of the {spec.name} "
            f"model in order, got {features!r}")
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": spec.name,
        "architecture": model.architecture.name,
        "input": spec.input,
        "hyperparameters": model.hyperparameters(),
        "features": list(features),
        "normalisation": {"mean": model.mean_.tolist(), "std": model.std_.tolist()},
        "history": model.history_,
        "versions": {"esmwatch": esmwatch_version, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "metadata": metadata,
    }
    try:
        return json.dumps(document, indent=2, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ConfigurationError(f"model metadata cannot be written as JSON: {err}") from err


def _write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write to a temporary sibling, then rename over ``path``."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _read_document(path: Path) -> dict[str, Any]:
    """The parsed model.json, checked to be ours and of a known architecture."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputFileError(path, "missing; not a saved esmwatch model") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputFileError(path, f"unreadable model description: {err}") from err
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InputFileError(path, f"not an {FORMAT} description")
    if document.get("format_version") != FORMAT_VERSION:
        raise InputFileError(
            path, f"format version {document.get('format_version')!r}, this esmwatch reads "
                  f"{FORMAT_VERSION}")
    if document.get("architecture") not in ARCHITECTURES:
        raise InputFileError(
            path, f"architecture {document.get('architecture')!r} is not one of "
                  f"{sorted(ARCHITECTURES)}")
    return document


def _check_features(directory: Path, saved: list[str], expected: list[str]) -> None:
    """Raise unless the caller's features are the saved ones, in the same order."""
    if saved == expected:
        return
    missing = [f for f in expected if f not in saved]
    extra = [f for f in saved if f not in expected]
    if missing or extra:
        detail = (f"expected but not in the model: {missing or 'none'}; "
                  f"in the model but not expected: {extra or 'none'}")
    else:
        detail = f"same features in another order; the model's order is {saved}"
    raise ConfigurationError(f"{directory}: features do not match the saved model ({detail})")


def _rebuild(directory: Path, document: dict[str, Any],
             device: torch.device | str | None) -> TorchClassifier:
    """An untrained classifier with the saved architecture, shape and standardisation."""
    try:
        hyper = document["hyperparameters"]
        normalisation = document["normalisation"]
        model = TorchClassifier(document["architecture"], seed=hyper["seed"],
                                training=TrainingConfig(**hyper["training"]), device=device,
                                **hyper["params"])
        model.initialise(tuple(hyper["input_shape"]), np.asarray(normalisation["mean"]),
                         np.asarray(normalisation["std"]))
    except (KeyError, TypeError, ValueError) as err:
        raise InputFileError(directory / DOCUMENT,
                             f"incomplete or inconsistent model description: {err!r}") from err
    return model
