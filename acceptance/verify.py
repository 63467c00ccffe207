"""Per-recording checks shared by both platform phases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common import Checks, find_published, outcome, sha256
from media import MediaFile
from sink import Sink


def recording_arrived(checks: Checks, prefix: str, name: str, f: MediaFile, storage: Path,
                      lines: list[dict[str, Any]], sink: Sink, secrets_: list[str]) -> None:
    p = f"{prefix}: {name}"
    o = outcome(lines, name)
    if not checks.check(f"{p} ends recording.completed", o is not None and o["event"] == "recording.completed",
                        f"outcome={o}"):
        return
    pub = find_published(storage, name)
    if not checks.check(f"{p} published once under its name", len(pub) == 1, f"{pub}"):
        return
    data = pub[0].read_bytes()
    checks.check(f"{p} file bytes equal what the media host served", data == f.data,
                 f"got {len(data)} bytes sha {sha256(data)[:12]}, served {len(f.data)} sha {sha256(f.data)[:12]}")
    checks.check(f"{p} recording.completed sha256/bytes match", o.get("sha256") == sha256(f.data) and o.get("bytes") == len(f.data),
                 f"{o.get('sha256')} {o.get('bytes')}")
    side = pub[0].with_suffix(".json")
    if checks.check(f"{p} sidecar exists", side.exists(), str(side)):
        raw = side.read_text()
        s = json.loads(raw)
        checks.check(f"{p} sidecar sha256 and bytes", s.get("sha256") == sha256(f.data) and s.get("bytes") == len(f.data),
                     f"{s.get('sha256')} {s.get('bytes')}")
        checks.check(f"{p} sidecar says verified_by", bool(s.get("verified_by") or s.get("verifiedBy")), f"keys={sorted(s)}")
        leaked = [x[:6] for x in secrets_ if x and x in raw]
        checks.check(f"{p} sidecar holds no secret/URL signature and no query string", not leaked and "?" not in raw.replace('"?"', ""),
                     f"leaked={leaked}")
    ann = [d for d in sink.deliveries if d["body"].get("data", {}).get("recordingId") == name]
    if checks.check(f"{p} announced to the archive (signed)", len(ann) >= 1, f"{len(sink.deliveries)} deliveries"):
        d = ann[0]["body"]["data"]
        checks.check(f"{p} announcement sha256/bytes/path", d.get("sha256") == sha256(f.data) and d.get("bytes") == len(f.data)
                     and str(d.get("path", "")).endswith(pub[0].name), json.dumps(d)[:300])
        checks.check(f"{p} one webhook-id across retries", len({a["id"] for a in ann}) == 1)
    checks.check(f"{p} media fetched without Authorization", not any(r["auth"] for r in f.requests))


def failed_naming(checks: Checks, prefix: str, name: str, words: list[str], lines: list[dict[str, Any]], storage: Path) -> None:
    o = outcome(lines, name)
    ok = o is not None and o["event"] == "recording.failed" and all(w.lower() in json.dumps(o).lower() for w in words)
    checks.check(f"{prefix}: {name} ends recording.failed naming {'/'.join(words)}", ok, f"outcome={o}")
    checks.check(f"{prefix}: {name} nothing published", not find_published(storage, name))
