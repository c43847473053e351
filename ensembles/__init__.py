"""Data layer of esmwatch: CESM discovery, catalogs, readers, grids, regions and features."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("esmwatch")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"
