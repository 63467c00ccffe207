"""genesys end to end: Basic-authenticated webhooks, transcoding, states, faults."""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from pathlib import Path

from aiohttp import ClientSession

import audio
from common import Checks, Daemon, audit_hygiene, outcome, post_webhook, serve, wait_for, whsec, write_toml
from fake_genesys import GConversation, GenesysFake, GRecording
from media import MediaFile, MediaHost
from sink import Sink
from verify import failed_naming, recording_arrived


def _id() -> str:
    return str(uuid.uuid4())


async def run(d: Path, checks: Checks) -> None:
    P = "genesys"
    media = MediaHost(stall_s=20)
    g = GenesysFake(media=media)
    sink = Sink(secret=whsec())
    runners = []
    urls = []
    for app in (media.app(), g.login_app(), g.api_app(), sink.app()):
        r, u = await serve(app)
        runners.append(r)
        urls.append(u)
    media.base, login_url, api_url, sink_url = urls[0], urls[1], urls[2], urls[3] + "/archive"
    adir = d / "audio"
    adir.mkdir()
    files: dict[str, MediaFile] = {}
    n = [0]

    def rec(conv: str, fmts: tuple[str, ...] = ("OGG_OPUS", "WAV"), rid: str | None = None, faults: dict[str, dict] | None = None,
            **kw: object) -> GRecording:
        rid = rid or _id()
        fm, du, sz = {}, {}, {}
        for fmt in fmts:
            kind = "opus" if fmt == "OGG_OPUS" else "wav"
            key = f"{rid}.{fmt}"
            p = audio.make(adir, key, kind, n[0])
            mf = MediaFile(key=key, data=p.read_bytes(), content_type="audio/ogg" if kind == "opus" else "audio/wav",
                           **((faults or {}).get(fmt, {})))
            files[key] = media.add(mf)
            fm[fmt], du[fmt], sz[fmt] = key, audio.duration_ms(p), len(mf.data)
        n[0] += 1
        return GRecording(rid=rid, conv=conv, formats=fm, durations=du, sizes=sz, **kw)  # type: ignore[arg-type]

    def conv(cid: str, recs: list[GRecording], **kw: object) -> GConversation:
        c = GConversation(cid=cid, recordings=recs, **kw)  # type: ignore[arg-type]
        g.convs[cid] = c
        return c

    C = {k: _id() for k in ["multi", "one", "throttle", "exp", "norange", "cut", "wav", "states", "archived", "stallexp", "wrong"]}
    multi = conv(C["multi"], [rec(C["multi"], transcode=["202", "empty"]), rec(C["multi"], transcode=["zero", "202"])])
    one = conv(C["one"], [rec(C["one"]), rec(C["one"])])
    conv(C["throttle"], [rec(C["throttle"])], throttle=2)
    conv(C["exp"], [rec(C["exp"], faults={"OGG_OPUS": {"ttl_by_issue": {1: 0, 2: 0}}})])
    conv(C["norange"], [rec(C["norange"], faults={"OGG_OPUS": {"range_ok": False, "faults": {1: "stall"}}})])
    conv(C["cut"], [rec(C["cut"], faults={"OGG_OPUS": {"faults": {1: "cut"}, "chunked": True}})])
    wavonly = conv(C["wav"], [rec(C["wav"], fmts=("WAV",), faults={"WAV": {"range_ok": False, "faults": {1: "cut"}}})])
    states = conv(C["states"], [rec(C["states"]), rec(C["states"], file_state="ARCHIVED"), rec(C["states"], file_state="DELETED"),
                                rec(C["states"], file_state="ERROR")])
    arch = conv(C["archived"], [rec(C["archived"], file_state="ARCHIVED"), rec(C["archived"], file_state="DELETED")])
    conv(C["stallexp"], [rec(C["stallexp"], faults={"OGG_OPUS": {"ttl_by_issue": {1: 1.5, 2: 1.5}, "faults": {1: "stall"}}})])
    wrong = conv(C["wrong"], [rec(C["wrong"])])

    user, password = "genesys-dataaction", secrets.token_urlsafe(24)
    cfg = d / "cxstream.toml"
    audit_path = d / "audit.ndjson"
    storage = d / "rec"
    write_toml(cfg, {
        "webhook": {"listen": "127.0.0.1:0", "auth": "basic", "user": user, "password": password},
        "source": {"kind": "genesys", "not_ready_grace_s": 30},
        "genesys": {"api_url": api_url, "login_url": login_url, "client_id": g.client_id, "client_secret": g.client_secret,
                    "formats": ["OGG_OPUS", "WAV"]},
        "streams": {"concurrency": 4, "idle_timeout_s": 2, "max_attempts": 8, "backoff_base_s": 0.2, "backoff_cap_s": 2},
        "storage": {"dir": str(storage), "state_dir": str(d / "state"), "min_free_bytes": 0},
        "archive": {"url": sink_url, "secret": sink.secret, "backoff_base_s": 0.5, "backoff_cap_s": 2},
        "audit": {"path": str(audit_path)},
        "admin": {"listen": "127.0.0.1:0"},
    })
    daemon = Daemon(cfg, audit_path, d)
    daemon.start()

    def basic(u: str, p: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{u}:{p}".encode()).decode()}

    try:
        await daemon.wait_started()
        async with ClientSession() as s:
            url = daemon.webhook
            cases = {
                "wrong password": basic(user, password[:-1] + ("x" if password[-1] != "x" else "y")),
                "wrong user": basic("someone", password),
                "no Authorization": {},
                "bearer instead of Basic": {"Authorization": "Bearer " + password},
                "malformed Basic": {"Authorization": "Basic !!!notbase64"},
                "Basic without colon": {"Authorization": "Basic " + base64.b64encode(user.encode()).decode()},
            }
            for what, h in cases.items():
                st, hd, _ = await post_webhook(s, url, {"contactId": C["wrong"]}, h)
                checks.check(f"{P}: {what} -> 401 with WWW-Authenticate Basic",
                             st == 401 and hd.get("WWW-Authenticate", "").startswith("Basic"), f"{st} {hd.get('WWW-Authenticate')}")
            auth = basic(user, password)
            sent = {}
            for k in ["multi", "throttle", "exp", "norange", "cut", "wav", "states", "stallexp"]:
                sent[k] = (await post_webhook(s, url, {"contactId": C[k]}, auth))[0]
            sent["one"] = (await post_webhook(s, url, {"contactId": C["one"], "recordingId": one.recordings[0].rid}, auth))[0]
            sent["archived"] = (await post_webhook(s, url, {"contactId": C["archived"], "recordingId": arch.recordings[0].rid}, auth))[0]
            sent["deleted"] = (await post_webhook(s, url, {"contactId": C["archived"], "recordingId": arch.recordings[1].rid}, auth))[0]
            sent["unknown-conv"] = (await post_webhook(s, url, {"contactId": _id()}, auth))[0]
            checks.check(f"{P}: every good webhook -> 202", all(v == 202 for v in sent.values()), str(sent))

            good = {r.rid: files[r.formats["OGG_OPUS"]] for c in ("multi", "throttle", "exp", "norange", "cut", "stallexp")
                    for r in g.convs[C[c]].recordings}
            good[one.recordings[0].rid] = files[one.recordings[0].formats["OGG_OPUS"]]
            good[wavonly.recordings[0].rid] = files[wavonly.recordings[0].formats["WAV"]]
            good[states.recordings[0].rid] = files[states.recordings[0].formats["OGG_OPUS"]]
            bad = {states.recordings[1].rid: "ARCHIVED", states.recordings[2].rid: "DELETED", states.recordings[3].rid: "ERROR",
                   arch.recordings[0].rid: "ARCHIVED", arch.recordings[1].rid: "DELETED"}
            names = list(good) + list(bad)
            try:
                await wait_for(lambda: all(outcome(daemon.lines(), n) for n in names), 150, "outcomes", 0.5)
            except TimeoutError:
                missing = [n for n in names if not outcome(daemon.lines(), n)]
                checks.check(f"{P}: every job reached an outcome within 150 s", False, f"missing {missing}")
            try:
                await wait_for(lambda: len(sink.deliveries) >= len(good), 20, "archive")
            except TimeoutError:
                pass
            st, _, body = await post_webhook(s, url, {"contactId": C["multi"]}, auth)
            checks.check(f"{P}: repeated webhook for a done conversation -> 200 duplicate", st == 200 and "duplicate" in body, f"{st} {body}")
            st, _, body = await post_webhook(s, url, {"contactId": C["one"], "recordingId": one.recordings[0].rid}, auth)
            checks.check(f"{P}: repeated webhook for a done recording -> 200 duplicate", st == 200 and "duplicate" in body, f"{st} {body}")
        lines = daemon.lines()
        secrets_ = [password, g.client_secret, *g.tokens, *media.url_secrets, sink.secret,
                    base64.b64encode(f"{user}:{password}".encode()).decode()]
        for name, f in good.items():
            recording_arrived(checks, P, name, f, storage, lines, sink, secrets_)
        for name, state in bad.items():
            failed_naming(checks, P, name, [state], lines, storage)
        unk = [l for l in lines if l.get("event") == "recording.failed" and l.get("recording_id") not in bad]
        checks.check(f"{P}: unknown conversation ends recording.failed (404), nothing else failed",
                     len(unk) == 1, str(unk))
        # evidence of the wrinkles
        checks.check(f"{P}: transcoding: polled until ready (202/empty/zero seen)",
                     all(sum(r.polls.values()) >= 3 for r in multi.recordings), str([r.polls for r in multi.recordings]))
        checks.check(f"{P}: a URI listed with outputSizeInBytes=0 was never downloaded", not media.unknown_requests, str(media.unknown_requests))
        checks.check(f"{P}: with recordingId only that recording was fetched",
                     not files[one.recordings[1].formats["OGG_OPUS"]].requests and outcome(lines, one.recordings[1].rid) is None)
        thr = [r for r in g.api_requests if r["conv"] == C["throttle"]]
        checks.check(f"{P}: 429 + Retry-After waited and retried", sum(r["status"] == 429 for r in thr) == 2 and thr[-1]["status"] == 200, str(thr))
        fe = files[g.convs[C["exp"]].recordings[0].formats["OGG_OPUS"]]
        checks.check(f"{P}: expired media URL (403) -> fresh URL from the API", fe.issued >= 2 and any(r["status"] == 403 for r in fe.requests), str(fe.requests))
        fn = files[g.convs[C["norange"]].recordings[0].formats["OGG_OPUS"]]
        checks.check(f"{P}: ignore-Range host after a stall: restart from 0", any(r["range"] and r["status"] == 200 for r in fn.requests), str(fn.requests))
        fw = files[wavonly.recordings[0].formats["WAV"]]
        wav_ext = [p.name for p in storage.rglob(f"{wavonly.recordings[0].rid}.*")]
        checks.check(f"{P}: OGG_OPUS error -> WAV fallback, published as .wav", any(x.endswith(".wav") for x in wav_ext), str(wav_ext))
        wq = [r["query"].get("formatId") for r in g.api_requests if r["conv"] == C["wav"]]
        checks.check(f"{P}: formatId asked in preference order (OGG_OPUS, then WAV)", wq[:1] == ["OGG_OPUS"] and "WAV" in wq, str(wq))
        fs = files[g.convs[C["stallexp"]].recordings[0].formats["OGG_OPUS"]]
        checks.check(f"{P}: URL expired during a stall: fresh URL asked", fs.issued >= 2, str(fs.requests))
        checks.check(f"{P}: client-credentials token, never a bad one", g.token_requests >= 1 and g.bad_token_requests == 0)
        checks.check(f"{P}: wrong credentials: nothing asked or fetched for that conversation",
                     not any(r["conv"] == C["wrong"] for r in g.api_requests) and not any(files[k].requests for k in wrong.recordings[0].formats.values()))
        checks.check(f"{P}: wrong credentials: nothing journaled",
                     not any(l.get("event") == "webhook.accepted" and C["wrong"] in str(l) for l in lines))
        rej = [l for l in lines if l.get("event") == "webhook.rejected"]
        checks.check(f"{P}: 401s audited with auth=basic and peer", len(rej) >= 6 and all(l.get("auth") == "basic" and l.get("peer") for l in rej), str(rej[:1]))
        checks.check(f"{P}: no media request carried Authorization", media.auth_headers_seen == 0)
        audit_hygiene(checks, P, lines, secrets_, audit_path.read_text())
        checks.check(f"{P}: sink rejected no announcement signature", sink.rejected == 0)
    finally:
        rc = daemon.stop()
        checks.check(f"{P}: daemon stops cleanly on SIGTERM (exit 0)", rc == 0, f"rc={rc}")
        err = (d / "daemon.stderr").read_text(errors="replace")
        checks.check(f"{P}: no traceback on stderr", "Traceback" not in err, err[-800:])
        for r in runners:
            await r.cleanup()
