"""Admin for redaction rules (redaction_rules.py: saved through audit.services, with a
"try it" box that runs the rule as typed through the real redaction code) and the
read-only, very large audit log (audit_log.py, its search fields in filters.py).
Importing the modules registers their admin classes."""

from audit.admin import audit_log, redaction_rules

__all__ = ["audit_log", "redaction_rules"]
