"""The `[probe]` table: how often and how patiently providers are probed.

Kept beside the probe and apart from the config loader, so a probe needs no config machinery (nor the
pricing library the loader brings with the usage section).
"""

from __future__ import annotations

from dataclasses import dataclass

from llmpulse.core.validate import Section


@dataclass(frozen=True)
class ProbeSettings:
    interval: float = 30.0  # seconds between probe rounds
    timeout: float = 10.0  # per provider, the whole request
    slow: float = 3.0  # a 2xx slower than this is degraded
    concurrency: int = 256  # probes in flight at once (a round is one wave up to this many)


def parse_probe_settings(root: Section) -> ProbeSettings:
    sec = root.table("probe")
    d = ProbeSettings()
    out = ProbeSettings(
        interval=sec.duration("interval", d.interval, minimum=0.1, maximum=86400.0),
        timeout=sec.duration("timeout", d.timeout, minimum=0.01, maximum=600.0),
        slow=sec.duration("slow", d.slow, minimum=0.0),
        concurrency=sec.integer("concurrency", d.concurrency, minimum=1),
    )
    sec.done()
    return out
