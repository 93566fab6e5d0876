"""The real thing end to end: an app using the `openai` SDK, instrumented by the official OpenTelemetry
OpenAI instrumentation, exporting with the OTel SDK's own OTLP/HTTP exporter (configured only by the
OTEL_* environment variables the README gives) to a real `llmpulse daemon`, against a fake
OpenAI-compatible server on 127.0.0.1. `llmpulse report` must then show those calls with their exact
tokens, a cost computed here from the configured price, and the service name as the agent — with and
without the opt-in to the latest GenAI conventions. The daemon is stopped
with SIGTERM: what it acknowledged is in the database."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmpulse.core.simulator.fleet import FakeProvider, Fleet, Request, Response
from tests.cli_helpers import run_cli

pytest.importorskip("opentelemetry.instrumentation.openai_v2")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")

TOKEN = "ingest-real-otel-0123456789"
API_KEY = "sk-proj-FakeOpenAIKeyForTests0123456789"
# USD per million tokens, configured as an override so this test can price each call itself.
PRICE = {"input": 2.5, "output": 10.0, "cache_read": 1.25}
CALLS = [(1234, 56, 1024), (800, 200, 0), (4096, 1, 4000)]  # (prompt, completion, cached) per call

APP = """
import sys
from openai import OpenAI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

provider = TracerProvider(resource=Resource.create())  # service.name from OTEL_SERVICE_NAME
exporter = OTLPSpanExporter()  # endpoint, headers from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / _HEADERS
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
OpenAIInstrumentor().instrument(tracer_provider=provider)
client = OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
for i in range(int(sys.argv[3])):
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"call {i}"}])
provider.force_flush()
provider.shutdown()
print("app done")
"""


def _chat_route(fleet: Fleet) -> None:
    answered = iter(CALLS * 2)

    def handler(fake: FakeProvider, req: Request) -> Response:
        prompt, completion, cached = next(answered)
        return Response.json(
            200,
            {
                "id": f"chatcmpl-{len(fake.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": "gpt-4o-2024-08-06",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "ok", "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                    "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
                },
                "service_tier": "default",
                "system_fingerprint": "fp_fleet",
            },
        )

    fleet.add_route("openai", "POST", "/chat/completions", handler)


def _env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("_API_KEY", "_ADMIN_KEY", "_BASE_URL")) and not k.startswith(("LLMPULSE_", "OTEL_"))
    }
    env.update({"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "XDG_DATA_HOME": str(tmp_path / "xdg"), "NO_PROXY": "*"})
    return env


def test_official_openai_instrumentation_through_otlp_into_report(tmp_path):
    (tmp_path / "llmpulse.toml").write_text(
        '[server]\ntoken_env = "LLMPULSE_INGEST_TOKEN"\n[probe]\ninterval = "1h"\n'
        '[prices.overrides."openai/gpt-4o-2024-08-06"]\n' + "".join(f"{k} = {v}\n" for k, v in PRICE.items())
    )
    db = str(tmp_path / "real.db")
    with Fleet([FakeProvider("openai", key=API_KEY)]) as fleet:
        _chat_route(fleet)
        daemon = subprocess.Popen(
            [sys.executable, "-m", "llmpulse.core.cli", "--db", db, "daemon", "--listen", "127.0.0.1:0"],
            cwd=tmp_path,
            env={**_env(tmp_path), "LLMPULSE_INGEST_TOKEN": TOKEN},
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            url, seen = None, []
            deadline = time.monotonic() + 30
            while url is None and time.monotonic() < deadline:
                line = daemon.stderr.readline()
                seen.append(line)
                m = re.search(r"serving on (http://\S+)", line)
                url = m.group(1) if m else None
            assert url, "".join(seen)
            (tmp_path / "app.py").write_text(APP)
            for service, opt_in in (("support-bot", ""), ("billing-bot", "gen_ai_latest_experimental")):
                app_env = {
                    **_env(tmp_path),
                    "OTEL_SERVICE_NAME": service,
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{url}/v1/traces",
                    "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer%20{TOKEN}",
                    "OTEL_SEMCONV_STABILITY_OPT_IN": opt_in,
                    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "false",
                }
                app = subprocess.run(
                    [sys.executable, str(tmp_path / "app.py"), fleet.base_url("openai"), API_KEY, str(len(CALLS))],
                    env=app_env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert app.returncode == 0 and "app done" in app.stdout, app.stderr[-3000:]
                assert "Failed to export" not in app.stderr, app.stderr[-3000:]
            daemon.send_signal(signal.SIGTERM)  # the spans were acknowledged: they must survive the stop
            _out, err = daemon.communicate(timeout=30)
        finally:
            if daemon.poll() is None:
                daemon.kill()
    assert daemon.returncode == 0, err[-3000:]
    assert TOKEN not in err and API_KEY not in err

    r = run_cli(tmp_path, "--db", db, "report", "--since", "24h", "--by", "agent", "--format", "json")
    assert r.returncode == 0, r.stderr
    groups = {g["key"]: g for g in json.loads(r.stdout)["groups"]}
    assert set(groups) == {"support-bot", "billing-bot"}
    prompt = sum(c[0] for c in CALLS)
    completion = sum(c[1] for c in CALLS)
    # This instrumentation's chat-completions spans carry no cached-token count (its Responses API spans
    # do, as gen_ai.usage.cache_read.input_tokens): every prompt token is priced at the input rate.
    want_cost = sum((p * PRICE["input"] + o * PRICE["output"]) / 1e6 for p, o, _ in CALLS)
    for g in groups.values():
        assert g["requests"] == len(CALLS)
        assert (g["input_tokens"], g["output_tokens"]) == (prompt, completion)
        assert g["cost_usd"] == pytest.approx(want_cost, rel=1e-9)
