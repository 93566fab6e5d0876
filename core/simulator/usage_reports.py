"""The providers' organisation usage APIs, simulated on a Fleet: OpenAI's
GET /organization/usage/completions and Anthropic's GET /v1/organizations/usage_report/messages.

Buckets are given as each provider writes them (OpenAI `{object: "bucket", start_time, end_time,
results}`, Anthropic `{starting_at, ending_at, results}`); the route returns those starting at or after
the query's start, `limit` buckets a page, with `has_more` / `next_page` as the providers page. A key
other than the admin key is refused with the body the provider sends (OpenAI: 403 missing the
api.usage.read scope; Anthropic: 401 invalid x-api-key). `buckets` is read on every request, so a test
can change it between pulls (a late bucket filled in).
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from llmpulse.core.simulator.fleet import FakeProvider, Fleet, Request, Response

OPENAI_PATH = "/organization/usage/completions"
ANTHROPIC_PATH = "/v1/organizations/usage_report/messages"
OPENAI_MISSING_SCOPE = {
    "error": {
        "message": "You have insufficient permissions for this operation. Missing scopes: api.usage.read. "
        "Check that you have the correct role in your organization (Reader, Writer, Owner) and project "
        "(Member, Owner), and if you're using a restricted API key, that it has the necessary scopes.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
}
ANTHROPIC_BAD_KEY = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}


def _start_of(bucket: dict[str, Any]) -> float:
    if "start_time" in bucket:
        return float(bucket["start_time"])
    return dt.datetime.fromisoformat(str(bucket["starting_at"]).replace("Z", "+00:00")).timestamp()


def _page(buckets: list[dict[str, Any]], since: float, req: Request, default_limit: int) -> dict[str, Any]:
    chosen = sorted((b for b in buckets if _start_of(b) >= since), key=_start_of)
    offset = 0
    token = req.query.get("page", [None])[0]
    if token:
        offset = int(base64.b64decode(token.removeprefix("page_")).decode())
    limit = int(req.query.get("limit", [default_limit])[0])
    part = chosen[offset : offset + limit]
    more = offset + limit < len(chosen)
    next_page = "page_" + base64.b64encode(str(offset + limit).encode()).decode() if more else None
    return {"data": part, "has_more": more, "next_page": next_page}


def serve_openai_usage(fleet: Fleet, provider_id: str, admin_key: str, buckets: list[dict[str, Any]]) -> None:
    def handler(fake: FakeProvider, req: Request) -> Response:
        if req.headers.get("authorization") != f"Bearer {admin_key}":
            return Response.json(403, OPENAI_MISSING_SCOPE)
        since = float(req.query["start_time"][0])
        return Response.json(200, {"object": "page", **_page(buckets, since, req, 7)})

    fleet.add_route(provider_id, "GET", OPENAI_PATH, handler)


def serve_anthropic_usage(fleet: Fleet, provider_id: str, admin_key: str, buckets: list[dict[str, Any]]) -> None:
    def handler(fake: FakeProvider, req: Request) -> Response:
        if req.headers.get("x-api-key") != admin_key:
            return Response.json(401, ANTHROPIC_BAD_KEY)
        since = dt.datetime.fromisoformat(req.query["starting_at"][0].replace("Z", "+00:00")).timestamp()
        return Response.json(200, _page(buckets, since, req, 7))

    fleet.add_route(provider_id, "GET", ANTHROPIC_PATH, handler)
