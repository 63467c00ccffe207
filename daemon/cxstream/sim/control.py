"""``/_sim/*``: observe the simulator and change its corpus while it runs."""

from __future__ import annotations

import orjson
from aiohttp import web

from cxstream.sim.responses import json_response
from cxstream.sim.spec import recording_from_dict
from cxstream.sim.state import STATE_KEY


async def handle_stats(request: web.Request) -> web.StreamResponse:
    return json_response(request.app[STATE_KEY].snapshot())


async def handle_add_recordings(request: web.Request) -> web.StreamResponse:
    """Add or replace recordings from one spec object or a list of them."""
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return json_response({"error": "invalid_json"}, 400)
    items = data if isinstance(data, list) else [data]
    try:
        # All or nothing: validate every spec before touching the corpus.
        specs = [recording_from_dict(item) for item in items]
    except ValueError as exc:
        return json_response({"error": "invalid_spec", "reason": str(exc)}, 400)
    state = request.app[STATE_KEY]
    for spec in specs:
        state.add_recording(spec)
    return json_response({"recordings": [spec.id for spec in specs]})
