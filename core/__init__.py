"""llmpulse engine: probes, records, prices, judges and stores. Never imports textual."""

__version__ = "0.1.0"
