"""llmpulse engine: probes, records, prices, judges and stores. Never imports textual."""

from importlib.metadata import PackageNotFoundError, version

try:
    # one place for the version: pyproject.toml, read back from the installed metadata
    __version__ = version("llmpulse")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
