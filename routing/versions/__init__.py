"""Configuration versions: who changed the configuration, when, what, and the whole of it.

routing/signals.py collects a transaction's configuration changes and, once it commits,
calls `services.config_version_record`, which exports the configuration (routing/config_io)
and keeps it as a `ConfigVersion` unless nothing changed. `services.config_version_rollback`
imports a version's document again (with prune), which records a version of its own. The
admin pages are `admin.py`; `diff.py` compares two documents.
"""
