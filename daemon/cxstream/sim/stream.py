"""``GET /api/v2/recordings/{id}/stream``: validation, faults and chunked delivery."""

from __future__ import annotations

from aiohttp import web

from cxstream.sim.audio import CONTENT_TYPES
from cxstream.sim.auth import invalid_token, require_token
from cxstream.sim.delivery import deliver
from cxstream.sim.faults import make_plan
from cxstream.sim.hostile import padded_json
from cxstream.sim.responses import ApiError, error_code, json_response, retryable
from cxstream.sim.spec import RecordingSpec
from cxstream.sim.state import STATE_KEY, RecordingStats, RequestLog, SimState
from cxstream.sim.validate import parse_offsets, parse_range, validate_stream_query


async def handle_stream(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    spec = state.recordings.get(request.match_info["id"])
    if spec is None:
        try:
            require_token(request)
            raise ApiError(404, "recording_not_found")
        except ApiError as err:
            return err.response()
    stats = state.stats_for(spec.id)
    stats.stream_requests += 1
    log = RequestLog(
        offsets=parse_offsets(request.query.get("offsets")) or request.query.get("offsets"),
        codec=request.query.get("codec"),
        range=request.headers.get("Range"),
    )
    stats.requests.append(log)
    state.notify()
    try:
        return await _serve(request, state, spec, stats, log)
    except ApiError as err:
        log.status = err.status
        state.notify()
        return err.response()


async def _serve(
    request: web.Request,
    state: SimState,
    spec: RecordingSpec,
    stats: RecordingStats,
    log: RequestLog,
) -> web.StreamResponse:
    token = require_token(request)
    number = stats.stream_requests
    active = [f for f in spec.faults if not f.for_metadata and f.applies(number)]
    log.faults = [f.kind for f in active]
    kinds = {f.kind: f for f in active}

    def count(n: int) -> None:
        stats.bytes_served += n
        log.bytes += n
        state.notify()

    if "expire_token" in kinds or "huge_token" in kinds:
        state.revoke(token)
        if "huge_token" in kinds:
            # The refresh this 401 provokes is answered with a huge body.
            state.huge_token = kinds["huge_token"]
        raise invalid_token()
    if "status" in kinds:
        raise retryable(kinds["status"].status, kinds["status"].retry_after)
    if "huge_error" in kinds:
        fault = kinds["huge_error"]
        log.status = fault.status
        return await padded_json(
            request,
            {"error": error_code(fault.status)},
            fault.size_bytes,
            status=fault.status,
            content_length=fault.content_length,
            count=count,
        )
    query = validate_stream_query(spec, request.query)
    if "codec_unavailable" in kinds:
        others = [c for c in spec.codecs if c != query.codec]
        raise ApiError(406, "codec_unavailable", available=others)
    if "json200" in kinds:
        log.status = 200
        return json_response({"error": "storage_timeout"}, 200)

    true_body, digest = state.audio.served(spec, query.codec, query.indices)
    plan = make_plan(true_body, query.codec, active, digest)
    total = len(plan.body)
    start = None if plan.ignore_range else parse_range(request.headers.get("Range"))
    if start is not None and start >= total:
        raise ApiError(416, "range_not_satisfiable", headers={"Content-Range": f"bytes */{total}"})
    resp = web.StreamResponse(status=200 if start is None else 206)
    resp.headers["Content-Type"] = CONTENT_TYPES[query.codec]
    resp.headers["Accept-Ranges"] = "bytes"
    resp.headers["Repr-Digest"] = plan.digest
    if plan.content_encoding is not None:
        resp.headers["Content-Encoding"] = plan.content_encoding
    if start is not None:
        resp.headers["Content-Range"] = f"bytes {start}-{total - 1}/{total}"
    if plan.content_length and plan.truncate_after is None and plan.endless is None:
        resp.content_length = total - (start or 0)
    else:
        resp.enable_chunked_encoding()
    log.status = resp.status

    stats.active_streams += 1
    state.notify()
    try:
        await resp.prepare(request)
        body = memoryview(plan.body)[start or 0 :]
        await deliver(request, resp, body, plan, count, state.shutdown)
    finally:
        # Also reached when a client hanging up cancels the handler, so tests
        # can wait for a stalled stream to be abandoned.
        stats.active_streams -= 1
        state.notify()
    return resp
