"""A simulated provider fleet: real HTTP servers on 127.0.0.1 that answer as the providers do.

Shipped because `llmpulse demo` runs on it; the tests and benchmarks use it too. Nothing else in the
engine imports it (an import-linter contract in pyproject.toml says so).
"""
