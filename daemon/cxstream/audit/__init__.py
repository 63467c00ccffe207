"""The audit trail: NDJSON lines for journald, log shippers and the governance record."""

from cxstream.audit.log import AuditLog, audit_to, open_audit

__all__ = ["AuditLog", "audit_to", "open_audit"]
