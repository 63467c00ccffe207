"""Source ``cxone-stream``: contract §1, segments fetched in batches.

The plan is made once per media (linear in the segments) and remade only
from the current position when the server lowers its limit (a 413) or a
resume lands between the batches of the current plan.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import aiohttp

from cxstream.fetcher.cxone import CxoneClient, RecordingMeta
from cxstream.fetcher.errors import PermanentError
from cxstream.fetcher.source import Expect, Piece, Target
from cxstream.formats import registry
from cxstream.formats.registry import Format
from cxstream.journal import Job
from cxstream.planner import Batch, PlanError, Segment, plan, select


class StreamMedia:
    def __init__(
        self,
        client: CxoneClient,
        meta: RecordingMeta,
        wanted: tuple[Segment, ...],
        codec: str,
        whole: bool,
    ) -> None:
        self._client = client
        self._meta = meta
        self._wanted = wanted
        self._codec = codec
        self._whole = whole
        self._max_segments = meta.max_segments
        self._starts: dict[int, Batch] = {}
        # How many plans were made: one, plus one per 413 or off-plan resume.
        self.plans = 0
        self._by_offset = {s.offset: s for s in wanted}
        info = meta.codecs[codec]
        self.fmt: Format = registry.get(codec)
        # A subset of segments cannot be held to the whole recording's sha256;
        # its size still cannot exceed the whole's.
        self.expect = Expect(size=info.bytes, sha256=info.sha256) if whole else Expect()
        self.max_bytes: int | None = info.bytes
        self.units = len(wanted)
        self.verified_by: tuple[str, ...] = (
            ("repr-digest", "size", "sha256") if whole else ("repr-digest",)
        )

    @property
    def segments(self) -> list[dict[str, int]]:
        return [{"offset": s.offset, "duration": s.duration} for s in self._wanted]

    def _replan(self, done: int) -> None:
        try:
            batches = plan(self._wanted[done:], self._max_segments, self._meta.max_duration)
        except PlanError as exc:
            raise PermanentError("plan_impossible", str(exc)) from None
        self.plans += 1
        self._starts = {}
        at = done
        for batch in batches:
            self._starts[at] = batch
            at += len(batch.segments)

    def piece(self, done: int) -> Piece:
        batch = self._starts.get(done)
        if batch is None:
            self._replan(done)
            batch = self._starts[done]
        return Piece(
            key=batch.offsets,
            units=len(batch.segments),
            label=batch.offsets_param,
            need_digest=not self._whole,
        )

    def narrow(self, max_segments: int | None, piece: Piece) -> bool:
        if piece.units == 1:
            return False
        lowered = max_segments or piece.units - 1
        self._max_segments = max(1, min(lowered, piece.units - 1))
        self._starts = {}
        return True

    def open(self, piece: Piece, start: int) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        batch = Batch(tuple(self._by_offset[o] for o in piece.key))
        return self._client.stream(
            self._meta.recording_id, self._codec, batch, self._meta.max_duration, start
        )


class CxoneStreamSource:
    kind = "cxone-stream"

    def __init__(self, client: CxoneClient, codecs: tuple[str, ...]) -> None:
        self._client = client
        self._codecs = codecs
        self._meta: dict[int, RecordingMeta] = {}

    async def resolve(self, job: Job) -> tuple[Target, ...]:
        meta = await self._client.metadata(job.recording_id)
        self._meta[job.id] = meta
        prefs = [job.codec] if job.codec else []
        if job.checkpoint is not None:
            # A previous run got somewhere in this codec: resume it, not start another.
            prefs.insert(0, job.checkpoint.codec)
        order = dict.fromkeys([*prefs, *self._codecs])
        formats = tuple(c for c in order if c in meta.codecs)
        if not formats:
            raise PermanentError("codec_unavailable", status=406)
        return (Target(name=job.recording_id, formats=formats),)

    async def media(self, job: Job, target: Target, fmt: str) -> StreamMedia:
        # resolve() has just read it; a second format (a 406) reuses it too.
        meta = self._meta.get(job.id) or await self._client.metadata(job.recording_id)
        self._meta[job.id] = meta
        try:
            wanted = select(meta.segments, job.offsets)
        except PlanError as exc:
            raise PermanentError("plan_impossible", str(exc)) from None
        whole = job.offsets is None or len(wanted) == len(meta.segments)
        return StreamMedia(self._client, meta, wanted, fmt, whole)

    def forget(self, job: Job) -> None:
        self._meta.pop(job.id, None)
