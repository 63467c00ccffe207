"""The cluster demo's checks, made from outside the daemons: the bucket read back.

Each archived recording is fetched from the bucket and held to the
simulator's source, its sidecar object and its announcement must describe
those very bytes and that ``s3://`` path, and the listing must hold each
recording exactly once, each with its sidecar, and nothing else.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from cxstream.demo.show import Board, Row
from cxstream.demo.stream import StreamScenario
from cxstream.devservers import s3 as s3dev


def _judge(sc: StreamScenario, row: Row, data: bytes, sidecar: Any, announced: Any) -> None:
    """As the single-node demo checks a file: the bytes, the sidecar, the announcement."""
    sha = hashlib.sha256(data).hexdigest()
    problems = [wrong] if (wrong := sc.check_bytes(row, data)) else []
    if not isinstance(sidecar, dict):
        problems.append("no sidecar")
    elif sidecar.get("sha256") != sha or sidecar.get("path") != row.path:
        problems.append("the sidecar describes another object")
    if announced is None:
        problems.append("not announced")
    elif announced.get("sha256") != sha or announced.get("path") != row.path:
        problems.append("announced with another sha256 or path")
    row.verified = not problems
    row.state = "verified" if row.verified else "BAD"
    row.note = "; ".join(problems)


async def verify_bucket(
    sc: StreamScenario, board: Board, endpoint: str, bucket: str, prefix: str
) -> tuple[int, list[str]]:
    """Every archived row against the bucket; the object count and what is wrong."""
    from aiobotocore.session import get_session

    announced = {a.payload["data"]["recordingId"]: a.payload["data"] for a in sc.announcements}
    problems: list[str] = []
    async with get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=s3dev.REGION,
        aws_access_key_id=s3dev.ACCESS_KEY_ID,
        aws_secret_access_key=s3dev.SECRET_ACCESS_KEY,
    ) as client:
        listed = await client.list_objects_v2(Bucket=bucket, Prefix=prefix)
        keys = [o["Key"] for o in listed.get("Contents", [])]
        for row in board.rows.values():
            if row.state != "archived":
                continue
            key = row.path.removeprefix(f"s3://{bucket}/")
            data = await (await client.get_object(Bucket=bucket, Key=key))["Body"].read()
            sidecar_key = key.rsplit(".", 1)[0] + ".json"
            sidecar = None
            if sidecar_key in keys:
                got = await client.get_object(Bucket=bucket, Key=sidecar_key)
                sidecar = orjson.loads(await got["Body"].read())
            _judge(sc, row, data, sidecar, announced.get(row.name))
    wanted = sorted(r.path.removeprefix(f"s3://{bucket}/") for r in board.rows.values() if r.path)
    recordings = sorted(k for k in keys if not k.endswith(".json"))
    if recordings != wanted:
        problems.append(f"the bucket holds {recordings}, expected each once: {wanted}")
    if len(keys) != 2 * len(recordings):
        problems.append(f"{len(keys)} objects for {len(recordings)} recordings")
    return len(keys), problems
