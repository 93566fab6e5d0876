"""llmpulse engine: probes, records, prices, judges and stores. Never imports textual."""

from typing import Any


def __getattr__(name: str) -> Any:
    # The version is read from the installed metadata when asked for (importlib.metadata costs ~25 ms,
    # which every command would pay at start-up for the one that prints it).
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        # one place for the version: pyproject.toml, read back from the installed metadata
        value = version("llmpulse")
    except PackageNotFoundError:  # running from a source tree that was never installed
        value = "0+unknown"
    globals()["__version__"] = value
    return value
