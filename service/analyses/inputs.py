"""The one path from archive roots to a feature table, used by every job and command.

Every analysis starts here, so the feature cache (``Settings.cache_dir``), the file
scheduler and the rule "an archive with no usable member is an input error" are the same
for the CLI, the API's jobs and the nightly scan.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ensembles.errors import InputFileError
from ensembles.features import FeatureSet, build_features, with_configurations

Progress = Callable[[float, str], None]


def load_features(roots: Sequence[str | Path], cache_dir: Path | None,
                  progress: Progress | None = None, scheduler: str | None = None,
                  configurations: Sequence[str | None] | None = None) -> FeatureSet:
    """Feature table of the roots; an archive with no usable member is an input error.

    ``configurations`` (one per root, from the registry or ``--configuration``) label the
    members; detectors take negatives only from a member's own configuration.
    """
    if progress:
        progress(0.02, f"reading {len(roots)} root(s)")
    built = build_features(roots, cache_dir=cache_dir, scheduler=scheduler)
    if not built.dataset.sizes.get("member"):
        shown = "; ".join(str(p) for p in built.problems[:5]) or "no CESM files found"
        raise InputFileError(roots[0], f"no member has usable monthly files ({shown})")
    if configurations:
        built.dataset = with_configurations(built.dataset, configurations)
    return built
