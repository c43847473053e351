"""Saved torch models reload without pickle, predict identically and guard their inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from detectors.artifacts import load_model, save_model
from detectors.models import TorchClassifier, get_model
from ensembles.errors import ConfigurationError, InputFileError
from tests.test_models import DATA, halves

TORCH_MODELS = ["mlp", "cnn"]


def names(model: TorchClassifier) -> list[str]:
    """One name per input: summary features for the MLP, channels for the CNN."""
    return [f"x{i}_labsea" for i in range(model.input_shape[0])]


@pytest.fixture(scope="module")
def trained() -> dict[str, tuple[TorchClassifier, np.ndarray]]:
    fitted = {}
    for name in TORCH_MODELS:
        (X, y, groups), (X_test, _) = halves(*DATA[get_model(name).input]())
        fitted[name] = (get_model(name).build(seed=0).fit(X, y, groups=groups), X_test)
    return fitted


@pytest.fixture
def saved(trained, tmp_path: Path) -> Path:
    model, _ = trained["mlp"]
    return save_model(model, "mlp", tmp_path / "risk", {"features": names(model)})


@pytest.mark.parametrize("name", TORCH_MODELS)
def test_reload_predicts_identically(name: str, trained, tmp_path: Path) -> None:
    model, X_test = trained[name]
    metadata = {"features": names(model), "ensembles": ["freeze-db", "pertlim"], "lead": 12}
    directory = save_model(model, name, tmp_path / name, metadata)
    assert sorted(p.name for p in directory.iterdir()) == ["model.json", "weights.pt"]

    loaded, document = load_model(directory, names(model), expected_architecture=name)
    np.testing.assert_array_equal(loaded.predict_proba(X_test), model.predict_proba(X_test))
    assert document["metadata"] == metadata and document["features"] == names(model)
    assert document["hyperparameters"]["input_shape"] == list(model.input_shape)
    assert {"esmwatch", "torch", "numpy"} <= set(document["versions"])
    np.testing.assert_array_equal(np.asarray(document["normalisation"]["mean"]), model.mean_)


def test_weights_are_a_plain_state_dict(saved: Path) -> None:
    state = torch.load(saved / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    json.loads((saved / "model.json").read_text())  # the rest is plain JSON


def test_feature_mismatch_names_missing_and_extra(trained, saved: Path) -> None:
    expected = names(trained["mlp"][0])
    expected[0] = "so_upper_baffin"
    message = r"not in the model: \['so_upper_baffin'\].*not expected: \['x0_labsea'\]"
    with pytest.raises(ConfigurationError, match=message):
        load_model(saved, expected)
    with pytest.raises(ConfigurationError, match="another order"):
        load_model(saved, names(trained["mlp"][0])[::-1])


def test_other_architecture_is_refused(saved: Path) -> None:
    with pytest.raises(ConfigurationError, match="holds a 'mlp' model, expected 'cnn'"):
        load_model(saved, expected_architecture="cnn")


def test_broken_directories_name_the_file(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"model\.json: missing"):
        load_model(tmp_path / "nothing")
    document = json.loads((saved / "model.json").read_text())
    (saved / "model.json").write_text(json.dumps({**document, "architecture": "lstm"}))
    with pytest.raises(InputFileError, match="architecture 'lstm'"):
        load_model(saved)
    (saved / "model.json").write_text("{not json")
    with pytest.raises(InputFileError, match="unreadable"):
        load_model(saved)
    (saved / "model.json").write_text(json.dumps(document))
    (saved / "weights.pt").unlink()
    with pytest.raises(InputFileError, match=r"weights\.pt: missing"):
        load_model(saved)


def test_weights_of_another_shape_are_refused(trained, saved: Path) -> None:
    other, _ = trained["cnn"]
    torch.save(other.require_network().state_dict(), saved / "weights.pt")
    with pytest.raises(InputFileError, match="cannot be loaded as mlp weights"):
        load_model(saved)


def test_bad_metadata_writes_nothing(trained, tmp_path: Path) -> None:
    model, _ = trained["mlp"]
    with pytest.raises(ConfigurationError, match="input names"):
        save_model(model, "mlp", tmp_path / "a", {"features": ["only_one"]})
    with pytest.raises(ConfigurationError, match="JSON"):
        save_model(model, "mlp", tmp_path / "b", {"features": names(model), "when": object()})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_only_trained_torch_models_are_saved(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="only torch"):
        save_model(get_model("gbm").build(), "gbm", tmp_path, {"features": []})
    with pytest.raises(ConfigurationError, match="not trained"):
        save_model(TorchClassifier("mlp"), "mlp", tmp_path, {"features": []})
