"""The model registry: versioned risk models on disk under ``models_dir``, rows in the store.

A job that trains a model registers a copy of it here (results may be cleaned up; the
registry keeps what a scan needs), and ``esmwatch model promote`` picks the version the
nightly scan uses.  Models are loaded only from inside ``models_dir``: a registry row that
points elsewhere (edited by hand, a restored backup) is refused rather than followed.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ensembles.errors import ConfigurationError
from service.settings import Settings
from service.store import ModelVersion, Store

if TYPE_CHECKING:
    from detectors.risk import RiskModel

log = logging.getLogger(__name__)

RISK_MODEL = "risk"


def register_model(store: Store, settings: Settings, name: str, source: Path,
                   metrics: dict[str, Any], *, promote_first: bool = True) -> ModelVersion:
    """Copy a saved model directory into the registry as the next version of ``name``.

    The first version of a name is promoted at once, so a fresh installation scans with
    the first model it trained; later versions wait for ``esmwatch model promote``.
    """
    row = store.add_model(name, "", metrics)
    target = model_dir(settings, name, row.version)
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    staging.rename(target)
    store.set_model_path(name, row.version, str(target))
    row.path = str(target)
    if promote_first and store.promoted_model(name) is None:
        row = store.promote_model(name, row.version)
    log.info("registered model %s v%d at %s%s", name, row.version, target,
             " (promoted)" if row.promoted else "")
    return row


def model_dir(settings: Settings, name: str, version: int) -> Path:
    assert settings.models_dir is not None  # filled by Settings
    return settings.models_dir / name / f"v{version}"


def checked_model_path(settings: Settings, path: str | Path) -> Path:
    """``path`` resolved, if it lies inside the model store; otherwise a clear error."""
    assert settings.models_dir is not None
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(settings.models_dir.resolve()):
        raise ConfigurationError(f"model file {path} lies outside the model store "
                                 f"{settings.models_dir}; refusing to load it")
    if not resolved.exists():
        raise ConfigurationError(f"model file {path} does not exist")
    return resolved


def load_promoted_risk(store: Store, settings: Settings) -> tuple[ModelVersion, RiskModel] | None:
    """The promoted risk model, or None when none has been trained or promoted yet."""
    row = store.promoted_model(RISK_MODEL)
    if row is None:
        return None
    from detectors.risk import RiskModel  # torch only when a model is loaded

    return row, RiskModel.load(checked_model_path(settings, row.path))
