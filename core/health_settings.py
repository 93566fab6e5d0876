"""The `[health]` table: the rolling window, the bands that grade error rate and latency, and the
circuit breaker's threshold and cool-down.

Kept beside the health module and apart from the config loader, which imports it (not the other way).
"""

from __future__ import annotations

from dataclasses import dataclass

from llmpulse.core.validate import Section

Bands = tuple[float, float, float]


@dataclass(frozen=True)
class HealthSettings:
    window: float = 900.0  # rolling window of probes/requests, seconds
    error_bands: Bands = (0.01, 0.05, 0.10)  # excellent < good < concerning < critical
    latency_bands: Bands = (0.5, 1.0, 3.0)  # excellent < good < acceptable < slow
    failure_threshold: int = 3  # consecutive failures that open a circuit
    cooldown: float = 60.0  # open -> half_open after this long


def _three_ascending(sec: Section, name: str, values: list[float]) -> Bands:
    if len(values) != 3 or not (values[0] <= values[1] <= values[2]):
        raise sec.error(name, values, "three ascending thresholds")
    return values[0], values[1], values[2]


def parse_health_settings(root: Section) -> HealthSettings:
    sec = root.table("health")
    d = HealthSettings()
    error_bands = sec.number_list("error_bands", list(d.error_bands))
    latency_raw = sec.raw("latency_bands", None)
    latency = list(d.latency_bands)
    if latency_raw is not None:
        if not isinstance(latency_raw, list) or len(latency_raw) != 3:
            raise sec.error("latency_bands", latency_raw, 'three durations like ["500ms", "1s", "3s"]')
        tmp = Section({str(i): v for i, v in enumerate(latency_raw)}, sec.source, sec.key("latency_bands"))
        latency = [tmp.duration(str(i)) for i in range(3)]
    out = HealthSettings(
        window=sec.duration("window", d.window, minimum=1.0),
        error_bands=_three_ascending(sec, "error_bands", error_bands),
        latency_bands=_three_ascending(sec, "latency_bands", latency),
        failure_threshold=sec.integer("failure_threshold", d.failure_threshold, minimum=1),
        cooldown=sec.duration("cooldown", d.cooldown),
    )
    sec.done()
    return out
