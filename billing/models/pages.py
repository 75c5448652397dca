"""Admin pages that are not a table of their own."""

from __future__ import annotations

from billing.models.periods import DailyUsage


class UsageReport(DailyUsage):
    """The admin's Usage & billing page (billing/finance_admin.py), over the daily roll-ups.

    A proxy so the page takes its place in the admin index and navigation like a model;
    it has no permissions of its own: viewing the roll-ups (billing.view_dailyusage) opens
    it."""

    class Meta:
        proxy = True
        verbose_name = "usage & billing"
        verbose_name_plural = "usage & billing"
        default_permissions = ()
