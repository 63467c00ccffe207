"""Contract §10: the [journal] section and [storage]'s object-store keys.

Same rules as tests/test_config.py (whose helpers this reuses): each bad
value is one line naming its key, through load() and through the CLI, and
no secret (the DSN, its password, the S3 secret key) is ever echoed.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from cxstream.config import ConfigError, load
from tests.test_config import Bad, _cli, _config, _materialise

DSN = "postgresql://cx:Pg-Secret-Value-7f3a@db.example.invalid:5432/cxstream"
S3_SECRET = "s3-secret-access-key-must-not-leak-9c1e"
OUR_SECRETS = (DSN, "Pg-Secret-Value-7f3a", S3_SECRET)
S3 = {"backend": "s3", "bucket": "cx-archive", "region": "eu-west-1"}


def _clean(text: str) -> None:
    for secret in OUR_SECRETS:
        assert secret not in text, f"a secret leaked into: {text!r}"


def test_defaults_are_the_single_node_ones(tmp_path: Path) -> None:
    cfg = load(_config(tmp_path), {})
    assert (cfg.journal.backend, cfg.journal.dsn, cfg.journal.lease_s) == ("sqlite", None, 30.0)
    assert cfg.journal.node == socket.gethostname()
    assert cfg.storage.backend == "fs" and cfg.storage.spool == tmp_path / "state" / "spool"


def test_postgres_dsn_from_each_source(tmp_path: Path) -> None:
    journal = {"backend": "postgres", "node": "node-1", "lease_s": 12}
    inline = load(_config(tmp_path, journal={**journal, "dsn": DSN}), {})
    assert inline.journal.dsn is not None and inline.journal.dsn.reveal() == DSN
    assert (inline.journal.node, inline.journal.lease_s) == ("node-1", 12.0)
    assert "Pg-Secret-Value-7f3a" in inline.secrets()  # the redactor masks the password alone
    assert "Pg-Secret" not in repr(inline)

    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(DSN + "\n")
    from_file = load(_config(tmp_path, journal={**journal, "dsn_file": str(dsn_file)}), {})
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "journal_dsn").write_text(DSN)
    from_cred = load(_config(tmp_path, journal=journal), {"CREDENTIALS_DIRECTORY": str(creds)})
    from_env = load(_config(tmp_path, journal=journal), {"CXSTREAM_JOURNAL_DSN": DSN})
    for cfg in (from_file, from_cred, from_env):
        assert cfg.journal.dsn is not None and cfg.journal.dsn.reveal() == DSN


def test_s3_storage(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "storage_secret_access_key").write_text(S3_SECRET)
    storage = {**S3, "prefix": "calls", "access_key_id": "AKIAEXAMPLE", "legal_hold": True}
    storage |= {"retention_mode": "COMPLIANCE", "retention_days": 3650, "sse": "aws:kms"}
    storage |= {"kms_key_id": "alias/archive", "endpoint": "https://s3.example.invalid"}
    cfg = load(_config(tmp_path, storage=storage), {"CREDENTIALS_DIRECTORY": str(creds)})
    s = cfg.storage
    assert (s.backend, s.bucket, s.prefix, s.region) == ("s3", "cx-archive", "calls/", "eu-west-1")
    assert s.secret_access_key is not None and s.secret_access_key.reveal() == S3_SECRET
    assert (s.retention_mode, s.retention_days, s.legal_hold) == ("COMPLIANCE", 3650, True)
    assert (s.sse, s.kms_key_id, s.endpoint) == ("aws:kms", "alias/archive", storage["endpoint"])
    assert S3_SECRET in cfg.secrets() and S3_SECRET not in repr(cfg)
    env = {"CXSTREAM_STORAGE_LEGAL_HOLD": "false", "CXSTREAM_STORAGE_SPOOL_DIR": "/srv/spool"}
    overridden = load(_config(tmp_path, storage=S3), env)
    assert overridden.storage.legal_hold is False
    assert overridden.storage.spool == Path("/srv/spool")


BAD = [
    Bad("journal-backend", "journal.backend", {"journal": {"backend": "mysql"}}),
    Bad("journal-dsn-missing", "journal.dsn", {"journal": {"backend": "postgres"}}),
    Bad("journal-dsn-garbage", "journal.dsn",
        {"journal": {"backend": "postgres", "dsn": "host='Pg-Secret-Value-7f3a"}}),
    Bad("journal-dsn-file-missing", "journal.dsn_file",
        {"journal": {"backend": "postgres", "dsn_file": "/nonexistent/cxstream/dsn"}}),
    Bad("journal-node", "journal.node", {"journal": {"node": "node one!"}}),
    Bad("journal-lease-short", "journal.lease_s", {"journal": {"lease_s": 1}}),
    Bad("journal-lease-env", "journal.lease_s", env={"CXSTREAM_JOURNAL_LEASE_S": "soon"}),
    Bad("journal-unknown-key", "journal.lease", {"journal": {"lease": 30}}),
    Bad("storage-backend", "storage.backend", {"storage": {"backend": "gcs"}}),
    Bad("s3-no-bucket", "storage.bucket", {"storage": {"backend": "s3", "region": "x"}}),
    Bad("s3-bad-bucket", "storage.bucket", {"storage": {**S3, "bucket": "Bad_Bucket"}}),
    Bad("s3-no-region", "storage.region", {"storage": {**S3, "region": ""}}),
    Bad("s3-endpoint", "storage.endpoint", {"storage": {**S3, "endpoint": "ftp://s3.local"}}),
    Bad("s3-retention-mode", "storage.retention_mode", {"storage": {"retention_mode": "WORM"}}),
    Bad("s3-retention-no-days", "storage.retention_days",
        {"storage": {"retention_mode": "GOVERNANCE"}}),
    Bad("s3-days-no-mode", "storage.retention_mode", {"storage": {"retention_days": 30}}),
    Bad("s3-days-negative", "storage.retention_days", {"storage": {"retention_days": -1}}),
    Bad("s3-sse", "storage.sse", {"storage": {"sse": "aes"}}),
    Bad("s3-kms-without-kms", "storage.kms_key_id", {"storage": {"kms_key_id": "alias/x"}}),
    Bad("s3-key-without-secret", "storage.secret_access_key",
        {"storage": {**S3, "access_key_id": "AKIAEXAMPLE"}}),
    Bad("s3-secret-without-key", "storage.access_key_id",
        {"storage": {**S3, "secret_access_key": S3_SECRET}}),
    Bad("s3-secret-not-string", "storage.secret_access_key",
        {"storage": {"secret_access_key": 12345678}}),
    Bad("s3-secret-file-missing", "storage.secret_access_key_file",
        {"storage": {"secret_access_key_file": "/nonexistent/cxstream/s3"}}),
    Bad("s3-legal-hold", "storage.legal_hold", {"storage": {"legal_hold": "maybe"}}),
    Bad("s3-prefix-absolute", "storage.prefix", {"storage": {"prefix": "/calls"}}),
    Bad("s3-prefix-dotdot", "storage.prefix", {"storage": {"prefix": "a/../b"}}),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_value_load(case: Bad, tmp_path: Path) -> None:
    path, env = _materialise(case, tmp_path)
    with pytest.raises(ConfigError) as info:
        load(path, env)
    line = str(info.value)
    assert info.value.key == case.key and line.startswith(f"{case.key}: ")
    assert "\n" not in line
    _clean(line)


async def test_bad_values_cli(tmp_path: Path) -> None:
    gate = asyncio.Semaphore(4)

    async def one(i: int, case: Bad) -> None:
        tmp = tmp_path / str(i)
        tmp.mkdir()
        path, env = _materialise(case, tmp)
        async with gate:
            code, out, err = await _cli("check-config", "--config", str(path), env=env)
        assert (code, out) == (2, ""), (case.id, err)
        assert err.startswith(f"cxstream: config: {case.key}: ") and err.count("\n") == 1, err
        _clean(err)

    async with asyncio.TaskGroup() as group:
        for i, case in enumerate(BAD):
            group.create_task(one(i, case))
