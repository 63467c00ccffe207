"""cxone-playback end to end: bearer webhooks, every documented wrinkle."""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from pathlib import Path

from aiohttp import ClientSession

import audio
from common import Checks, Daemon, audit_hygiene, outcome, post_webhook, serve, wait_for, whsec, write_toml
from fake_cxone import Contact, CxoneFake
from media import MediaFile, MediaHost
from sink import Sink
from verify import failed_naming, recording_arrived

GRACE = 8


async def run(d: Path, checks: Checks) -> None:
    P = "cxone"
    media = MediaHost(stall_s=20)
    cx = CxoneFake(media=media, token_ttl=20)
    sink = Sink(secret=whsec())
    runners = []
    for app, attr in ((media.app(), "media"), (cx.auth_app(), "issuer"), (cx.api_app(), "api"), (sink.app(), "sink")):
        r, url = await serve(app)
        runners.append(r)
        if attr == "media":
            media.base = url
        elif attr == "issuer":
            cx.issuer = url
        elif attr == "api":
            cx.api = url
        else:
            sink_url = url + "/archive"
    adir = d / "audio"
    adir.mkdir()
    files: dict[str, MediaFile] = {}

    def mk(key: str, kind: str = "mp4", **kw: object) -> str:
        p = audio.make(adir, key, kind, len(files))
        files[key] = media.add(MediaFile(key=key, data=p.read_bytes(), content_type="video/mp4", **kw))  # type: ignore[arg-type]
        return key

    def contact(cid: str, keys: list[str], **kw: object) -> None:
        cx.contacts[cid] = Contact(contact_id=cid, files=keys, **kw)  # type: ignore[arg-type]

    contact("ca-multi", [mk("ca-1"), mk("ca-2", "mp4fs")])
    contact("cb-notyet", [mk("cb-1")], not_found_until=time.monotonic() + 3)
    contact("cc-exp403", [mk("cc-1", ttl_by_issue={1: 0})])
    contact("cd-exp404", [mk("cd-1", ttl_by_issue={1: 0}, expired_status=404)])
    contact("ce-norange-stall", [mk("ce-1", range_ok=False, faults={1: "stall"})])
    contact("cf-cut", [mk("cf-1", faults={1: "cut"}, chunked=True)])
    contact("cg-429", [mk("cg-1")], throttle=2, throttle_retry_after="1")
    contact("ch-429-nora", [mk("ch-1")], throttle=2)
    contact("ci-stall-exp", [mk("ci-1", ttl_by_issue={1: 1.5}, faults={1: "stall"})])
    contact("cj-norange-cut", [mk("cj-1", "mp4fs", range_ok=False, faults={1: "cut"})])
    contact("ck-named", [mk("ck-1")])
    contact("584732910", [mk("cn-1")])
    contact("cl-503", [mk("cl-1", faults={1: "503", 2: "stall"})])
    contact("cz-wrong", [mk("cz-1")])

    token = secrets.token_urlsafe(32)
    cfg = d / "cxstream.toml"
    audit_path = d / "audit.ndjson"
    storage = d / "rec"
    write_toml(cfg, {
        "webhook": {"listen": "127.0.0.1:0", "auth": "bearer", "token": token},
        "source": {"kind": "cxone-playback", "not_ready_grace_s": GRACE},
        "cxone": {"issuer": cx.issuer, "access_key_id": cx.access_key_id, "access_key_secret": cx.access_key_secret,
                  "client_id": cx.client_id, "client_secret": cx.client_secret},
        "streams": {"concurrency": 4, "idle_timeout_s": 2, "max_attempts": 8, "backoff_base_s": 0.2, "backoff_cap_s": 2},
        "storage": {"dir": str(storage), "state_dir": str(d / "state"), "min_free_bytes": 0},
        "archive": {"url": sink_url, "secret": sink.secret, "backoff_base_s": 0.5, "backoff_cap_s": 2},
        "audit": {"path": str(audit_path)},
        "admin": {"listen": "127.0.0.1:0"},
    })
    daemon = Daemon(cfg, audit_path, d)
    daemon.start()
    try:
        await daemon.wait_started()
        checks.check(f"{P}: daemon starts with issuer discovery only (no base_url, no token_url)", True)
        async with ClientSession() as s:
            url = daemon.webhook
            # --- wrong credentials: 401, nothing fetched -----------------------
            cases = {
                "wrong bearer token": {"Authorization": "Bearer " + secrets.token_urlsafe(32)},
                "no Authorization": {},
                "Basic instead of bearer": {"Authorization": "Basic " + base64.b64encode(f"x:{token}".encode()).decode()},
                "Standard Webhooks headers only": {"webhook-id": "msg_1", "webhook-timestamp": str(int(time.time())),
                                                   "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()},
                "token with a trailing char": {"Authorization": "Bearer " + token + "x"},
            }
            for what, h in cases.items():
                st, hd, _ = await post_webhook(s, url, {"contactId": "cz-wrong"}, h)
                checks.check(f"{P}: {what} -> 401 with WWW-Authenticate Bearer",
                             st == 401 and hd.get("WWW-Authenticate", "").startswith("Bearer"), f"{st} {hd.get('WWW-Authenticate')}")
            auth = {"Authorization": f"Bearer {token}"}
            # body rules with this kind
            st, _, body = await post_webhook(s, url, {"recordingId": "only-rec"}, auth)
            checks.check(f"{P}: webhook without contactId -> 400", st == 400, f"{st} {body[:120]}")
            st, _, body = await post_webhook(s, url, {"contactId": "ca-multi", "offsets": [0]}, auth)
            checks.check(f"{P}: offsets with cxone-playback -> 400", st == 400, f"{st} {body[:120]}")
            # --- good webhooks -------------------------------------------------
            sent: dict[str, int] = {}
            for cid in ["ca-multi", "cb-notyet", "cc-exp403", "cd-exp404", "ce-norange-stall", "cf-cut", "cg-429",
                        "ch-429-nora", "ci-stall-exp", "cj-norange-cut", "cl-503", "c-never"]:
                st, _, body = await post_webhook(s, url, {"contactId": cid}, auth)
                sent[cid] = st
            st, _, body = await post_webhook(s, url, {"contactId": "ck-named", "recordingId": "rk-name-1"}, auth)
            sent["ck-named"] = st
            st, _, body = await post_webhook(s, url, {"contactId": 584732910}, auth)
            sent["584732910"] = st
            checks.check(f"{P}: every good webhook -> 202", all(v == 202 for v in sent.values()), str(sent))
            st, _, body = await post_webhook(s, url, {"contactId": "ca-multi"}, auth)
            checks.check(f"{P}: repeated webhook for a queued contact -> 200 duplicate", st == 200 and "duplicate" in body, f"{st} {body}")

            expected = {
                "ca-multi": "ca-1", "ca-multi-2": "ca-2", "cb-notyet": "cb-1", "cc-exp403": "cc-1", "cd-exp404": "cd-1",
                "ce-norange-stall": "ce-1", "cf-cut": "cf-1", "cg-429": "cg-1", "ch-429-nora": "ch-1",
                "ci-stall-exp": "ci-1", "cj-norange-cut": "cj-1", "rk-name-1": "ck-1", "584732910": "cn-1", "cl-503": "cl-1",
            }
            names = list(expected) + ["c-never"]
            try:
                await wait_for(lambda: all(outcome(daemon.lines(), n) for n in names), 150, "all outcomes", 0.5)
            except TimeoutError:
                missing = [n for n in names if not outcome(daemon.lines(), n)]
                checks.check(f"{P}: every job reached an outcome within 150 s", False, f"missing {missing}")
            # archive deliveries may lag a moment
            try:
                await wait_for(lambda: len({x['body']['data'].get('recordingId') for x in sink.deliveries}) >= len(expected), 20, "archive")
            except TimeoutError:
                pass
            st, _, body = await post_webhook(s, url, {"contactId": "ca-multi"}, auth)
            checks.check(f"{P}: repeated webhook for a done contact -> 200 duplicate", st == 200 and "duplicate" in body, f"{st} {body}")
        lines = daemon.lines()
        secrets_ = [token, cx.access_key_secret, cx.client_secret, *cx.issued_tokens, *media.url_secrets,
                    *(t.split(".")[2] for t in cx.issued_tokens), sink.secret]
        for name, key in expected.items():
            recording_arrived(checks, P, name, files[key], storage, lines, sink, secrets_)
        failed_naming(checks, P, "c-never", ["not_ready"], lines, storage)
        nv = outcome(lines, "c-never")
        if nv is not None:
            t_acc = next((l["ts"] for l in lines if l.get("event") == "webhook.accepted" and l.get("recording_id") == "c-never"), None)
            checks.check(f"{P}: c-never failed only after not_ready_grace_s", t_acc is not None and _secs(nv["ts"]) - _secs(t_acc) >= GRACE - 0.5,
                         f"accepted {t_acc} failed {nv['ts']}")
        # fault evidence
        ce = files["ce-1"].requests
        checks.check(f"{P}: ignore-Range host: a resume asked Range and got 200 (restart from 0)",
                     any(r["range"] and r["status"] == 200 for r in ce), str(ce))
        checks.check(f"{P}: expired URL (403) re-asked the API", files["cc-1"].issued >= 2 and any(r["status"] == 403 for r in files["cc-1"].requests), str(files["cc-1"].requests))
        checks.check(f"{P}: expired URL (404) re-asked the API", files["cd-1"].issued >= 2, str(files["cd-1"].requests))
        checks.check(f"{P}: URL expired during a stall: fresh URL asked", files["ci-1"].issued >= 2, str(files["ci-1"].requests))
        checks.check(f"{P}: cut with Range support resumed with 206", any(r["status"] == 206 for r in files["cf-1"].requests), str(files["cf-1"].requests))
        checks.check(f"{P}: not-found-yet contact was asked again", cx.contacts["cb-notyet"].lookups >= 2)
        checks.check(f"{P}: tokens by password grant, never a bad one", cx.token_requests >= 1 and cx.bad_token_requests == 0,
                     f"{cx.token_requests} {cx.bad_token_requests}")
        checks.check(f"{P}: lookups asked media-type=voice-only&exclude-waveforms=true",
                     all(r["query"].get("media-type") == "voice-only" and r["query"].get("exclude-waveforms") == "true" for r in cx.api_requests),
                     str([r["query"] for r in cx.api_requests][:2]))
        checks.check(f"{P}: wrong credentials: nothing looked up or fetched for cz-wrong",
                     not any(r["query"].get("acd-call-id") == "cz-wrong" for r in cx.api_requests) and not files["cz-1"].requests)
        checks.check(f"{P}: wrong credentials: nothing journaled for cz-wrong",
                     not any(l.get("event") == "webhook.accepted" and "cz-wrong" in str(l) for l in lines))
        rej = [l for l in lines if l.get("event") == "webhook.rejected"]
        checks.check(f"{P}: 401s audited as webhook.rejected with auth=bearer and peer",
                     len(rej) >= 5 and all(l.get("auth") == "bearer" and l.get("peer") for l in rej[:5]), str(rej[:1]))
        acc = [l for l in lines if l.get("event") == "webhook.accepted"]
        checks.check(f"{P}: webhook.accepted carries auth and peer, webhook_id null",
                     bool(acc) and all(l.get("auth") == "bearer" and l.get("peer") and l.get("webhook_id") is None for l in acc), str(acc[:1]))
        audit_hygiene(checks, P, lines, secrets_, audit_path.read_text())
        checks.check(f"{P}: sink rejected no announcement signature", sink.rejected == 0)
    finally:
        rc = daemon.stop()
        checks.check(f"{P}: daemon stops cleanly on SIGTERM (exit 0)", rc == 0, f"rc={rc}")
        err = (d / "daemon.stderr").read_text(errors="replace")
        checks.check(f"{P}: no traceback on stderr", "Traceback" not in err, err[-800:])
        for r in runners:
            await r.cleanup()


def _secs(ts: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
