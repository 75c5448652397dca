"""Ops in a real browser: headless Debian Chromium, driven by Selenium through
/usr/bin/chromedriver, against a real gateway process (uvicorn on the test database).

Not pytest-django's live_server: the live traffic page's stream is a Channels consumer,
which only the ASGI server serves. The admin is served by that same process, so what the
browser saves is what the proxy serves next.

A member of the Ops group (staff, not superuser) logs in, sees the dashboard, creates a
tenant, issues a key and copies it, builds a route with a fallback, sets a budget, tries a
redaction rule, watches a request appear on the live page, opens its audit row, then
changes the route and rolls the change back through the configuration versions. Each
page is saved as var/screenshots/ops-*.png; the run's summary says where.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import transaction

from audit.models import RedactionRule
from audit.services import redaction_rule_upsert
from billing.models import Budget
from routing.models import ConfigVersion, Route
from tenants.models import ApiKey, Tenant
from tests import factories
from tests.billing.finance_data import groups_as_migrated
from tests.browser import SCREENSHOTS, chromium
from tests.browser import screenshot as save_screenshot
from tests.live import GatewayProcess, stop_quietly

PASSWORD = "ops-browser-test"
SLUG = "initech"
ROUTE = "support"
SAMPLE = "Mail jane.doe@example.com about INV-204518"

# The gateway process sees committed rows only.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def gateway(django_db_blocker) -> Iterator[GatewayProcess]:
    """An Ops user, the default e-mail redaction rule, a stub provider with three models
    for routes to point at, and the
    gateway serving the admin (its static files collected, as `make serve` does)."""
    from django.contrib.auth import get_user_model

    groups_as_migrated()
    user = get_user_model().objects.create_user("olive", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="Ops"))
    with transaction.atomic():
        # The e-mail rule a fresh install has (audit 0003); an earlier transactional test's
        # flush may have taken it.
        redaction_rule_upsert(name="E-mail addresses", detector="email", replacement="[EMAIL]")
        provider = factories.make_provider("local", kind="stub")
        for name in ("alpha", "beta", "gamma"):
            factories.make_model(provider, name)
    call_command("collectstatic", interactive=False, verbosity=0)  # into its state dir
    process = GatewayProcess().start()
    yield process
    stop_quietly(process, django_db_blocker=django_db_blocker)


@pytest.fixture
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    downloads = tmp_path_factory.mktemp("downloads")
    with chromium(tmp_path_factory.mktemp("chromium-profile"), downloads) as driver:
        yield driver


def chat(gateway: GatewayProcess, key: str, content: str = "Hello there") -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json={"model": ROUTE, "messages": [{"role": "user", "content": content}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )


def route_models() -> list[str]:
    route = Route.objects.get(name=ROUTE, tenant__slug=SLUG)
    return [
        target.provider_model.name
        for target in route.targets.select_related("provider_model").order_by("position")
    ]


class Walk:
    """The browser and the few gestures the walk repeats."""

    def __init__(self, driver, base_url: str) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.base_url = base_url
        self.wait = WebDriverWait(driver, 20).until
        self.saved: list[Path] = []

    def get(self, path: str) -> None:
        self.driver.get(f"{self.base_url}{path}")

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def present(self, css: str):
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as until

        try:
            return self.wait(until.presence_of_element_located((By.CSS_SELECTOR, css)))
        except TimeoutException:
            # Say what the page shows instead (a form's errors, most often).
            save_screenshot(self.driver, "ops-failed")
            errors = [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, ".errorlist")]
            raise AssertionError(
                f"no {css} on {self.driver.current_url}: errors {errors}, "
                "page in var/screenshots/ops-failed.png"
            ) from None

    def type(self, css: str, text: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(text)

    def choose(self, select_id: str, search: str, expect: str) -> None:
        """A select2 autocomplete, as a user does: open it, type, take the highlighted
        result once it is the one wanted."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support import expected_conditions as until

        opened = ".select2-container--open"  # the dropdown, appended to the body when open
        self.find(f"#{select_id} + .select2 .select2-selection").click()
        field = self.present(f"{opened} .select2-search__field")
        field.send_keys(search)
        self.wait(
            until.text_to_be_present_in_element(
                (By.CSS_SELECTOR, f"{opened} .select2-results__option--highlighted"), expect
            )
        )
        field.send_keys(Keys.ENTER)
        self.wait(
            until.text_to_be_present_in_element(
                (By.CSS_SELECTOR, f"#{select_id} + .select2 .select2-selection__rendered"), expect
            )
        )

    def submit(self, name: str = "_save") -> None:
        self.find(f"input[name={name}]").click()

    def screenshot(self, name: str) -> None:
        self.saved.append(save_screenshot(self.driver, f"ops-{name}"))


def test_ops_walk_the_gateway_in_a_browser(gateway, browser, request):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import Select, WebDriverWait

    started = time.monotonic()
    for stale in SCREENSHOTS.glob("ops-*.png"):
        stale.unlink()
    walk = Walk(browser, gateway.base_url)

    # Log in: the login page, then the dashboard.
    walk.get("/admin/login/?next=/admin/")
    walk.find("input[name=username]").send_keys("olive")
    walk.find("input[name=password]").send_keys(PASSWORD)
    walk.screenshot("01-login")
    walk.find("input[type=submit]").click()
    walk.present("#dashboard")
    # Ops see traffic, budgets and circuits; spend is Finance's (dashboard/panels.py).
    for panel in ("traffic", "budgets", "circuits"):
        assert walk.find(f"#panel-{panel}").is_displayed(), panel
    assert not browser.find_elements(By.ID, "panel-spend")
    assert walk.find("#traffic-requests-24h").text == "0"  # nothing has been sent yet
    for link in ("link-live", "link-config-versions", "link-audit-log"):
        assert walk.find(f"#{link}").get_attribute("href").startswith(gateway.base_url)
    walk.screenshot("02-dashboard")

    # A tenant.
    walk.get("/admin/tenants/tenant/add/")
    walk.type("#id_slug", SLUG)
    walk.type("#id_name", "Initech")
    walk.screenshot("03-tenant-add")
    walk.submit()
    walk.present(".messagelist .success")
    tenant = Tenant.objects.get(slug=SLUG)
    assert tenant.name == "Initech"

    # A key, shown once, copied with the button.
    walk.get("/admin/tenants/apikey/add/")
    walk.choose("id_tenant", SLUG, SLUG)
    walk.type("#id_name", "initech-prod")
    walk.submit()
    plaintext = walk.present("#issued-key").text
    api_key = ApiKey.objects.get(tenant=tenant, name="initech-prod")
    assert plaintext.startswith(api_key.prefix) and len(plaintext) > len(api_key.prefix)
    # Headless Chromium grants no clipboard by default: grant it, as a user's click would.
    browser.execute_cdp_cmd(
        "Browser.grantPermissions",
        {
            "origin": gateway.base_url,
            "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"],
        },
    )
    walk.find("#copy-key").click()
    walk.wait(until.text_to_be_present_in_element((By.ID, "copy-key-status"), "Copied."))
    copied = browser.execute_async_script(
        "navigator.clipboard.readText().then(arguments[0], e => arguments[0]('! ' + e))"
    )
    assert copied == plaintext
    walk.screenshot("04-key-issued")
    models = httpx.get(
        f"{gateway.base_url}/v1/models", headers={"authorization": f"Bearer {copied}"}, timeout=5
    )
    assert models.status_code == 200, models.text
    refused = httpx.get(
        f"{gateway.base_url}/v1/models",
        headers={"authorization": f"Bearer {copied[:-2]}xx"},
        timeout=5,
    )
    assert refused.status_code == 401

    # A route with a fallback: alpha first, beta when alpha fails.
    walk.get("/admin/routing/route/add/")
    walk.type("#id_name", ROUTE)
    walk.choose("id_tenant", SLUG, SLUG)
    Select(walk.find("#id_strategy")).select_by_value("fallback")
    for row, model in enumerate(("alpha", "beta")):
        walk.choose(f"id_targets-{row}-provider_model", model, f"local/{model}")
        walk.type(f"#id_targets-{row}-position", str(row))
    walk.screenshot("05-route-add")
    walk.submit("_continue")
    walk.present(".messagelist .success")
    route = Route.objects.get(name=ROUTE, tenant=tenant)
    assert route.strategy == "fallback"
    assert route_models() == ["alpha", "beta"]
    for target in route.targets.all():
        assert walk.find(f"#circuit-state-{target.pk}").get_attribute("data-state") == "closed"
    walk.screenshot("06-route-targets")
    answer = chat(gateway, copied)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-gateway-model"] == "alpha"

    # A budget for the tenant.
    walk.get("/admin/billing/budget/add/")
    Select(walk.find("#id_scope")).select_by_value("tenant")
    walk.choose("id_tenant", SLUG, SLUG)
    Select(walk.find("#id_period")).select_by_value("monthly")
    walk.type("#id_max_cost_usd", "25")
    walk.screenshot("07-budget-add")
    walk.submit()
    walk.present(".messagelist .success")
    budget = Budget.objects.get(tenant=tenant)
    assert (budget.period, budget.max_cost_usd, budget.hard) == ("monthly", Decimal("25"), True)
    walk.screenshot("08-budgets")

    # A redaction rule, tried on a sample before it is saved: alone, then with the others.
    walk.get("/admin/audit/redactionrule/add/")
    walk.type("#id_name", "invoice numbers")
    Select(walk.find("#id_detector")).select_by_value("regex")
    walk.type("#id_pattern", r"INV-\d{6}")
    walk.type("#id_replacement", "[INVOICE]")
    Select(walk.find("#id_scope")).select_by_value("audit_and_upstream")
    walk.type("#redaction-try-sample", SAMPLE)
    walk.find("#redaction-try-scope-rule").click()
    walk.find("#redaction-try-button").click()
    walk.wait(until.visibility_of_element_located((By.ID, "redaction-try-output")))
    redacted = "Mail jane.doe@example.com about [INVOICE]"
    assert walk.find("#redaction-try-output").text == redacted
    assert walk.find("#redaction-try-upstream").text == redacted  # scope: upstream too
    assert not walk.find("#redaction-try-error").is_displayed()
    walk.find("#redaction-try-scope-all").click()
    walk.find("#redaction-try-button").click()
    walk.wait(until.text_to_be_present_in_element((By.ID, "redaction-try-rules"), ","))
    assert "invoice numbers" in walk.find("#redaction-try-rules").text
    assert walk.find("#redaction-try-output").text == "Mail [EMAIL] about [INVOICE]"
    walk.screenshot("09-redaction-try")
    walk.submit()
    walk.present(".messagelist .success")
    rule = RedactionRule.objects.get(name="invoice numbers")
    assert (rule.pattern, rule.scope) == (r"INV-\d{6}", "audit_and_upstream")

    # The live page: a request appears as it finishes.
    walk.get("/admin/live/")
    walk.present("#live-traffic-status[data-state=open]")
    assert walk.find("#live-traffic-waiting").is_displayed()
    time.sleep(1.2)  # the process notices a watcher within LIVE_TRAFFIC_CHECK_SECONDS
    sent: list[str] = []
    seen = None
    for _ in range(5):  # resent if the watcher was not noticed in time (bounded)
        answer = chat(gateway, copied)
        assert answer.status_code == 200, answer.text
        sent.append(answer.headers["x-request-id"])
        try:
            seen = WebDriverWait(browser, 3).until(
                until.presence_of_element_located(
                    (By.CSS_SELECTOR, "#live-traffic-rows tr[id^=live-request-]")
                )
            )
            break
        except TimeoutException:
            continue
    assert seen is not None, f"no row for {sent}"
    request_id = seen.get_attribute("data-request-id")
    assert request_id in sent
    assert seen.get_attribute("id") == f"live-request-{request_id}"
    assert SLUG in seen.text and ROUTE in seen.text and "200" in seen.text
    walk.screenshot("10-live-traffic")

    # Its audit row: from the live row's link to the search, to the row.
    gateway.drain()
    seen.find_element(By.CSS_SELECTOR, "td:last-child a").click()
    walk.wait(until.url_contains(f"q={request_id}"))
    assert walk.find("#searchbar").get_attribute("value") == request_id
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 1 and SLUG in rows[0].text
    walk.screenshot("11-audit-search")
    rows[0].find_element(By.CSS_SELECTOR, "th a").click()
    version_link = walk.present("#audit-config-version")
    assert request_id in walk.find("#content").text
    walk.screenshot("12-audit-row")
    version_hash = version_link.text
    version_link.click()
    walk.wait(until.text_to_be_present_in_element((By.ID, "version-routing-hash"), version_hash))
    walk.screenshot("13-audit-version")

    # Change the route: gamma first instead of alpha.
    before = ConfigVersion.objects.order_by("-pk").first()
    assert before is not None
    walk.get(f"/admin/routing/route/{route.pk}/change/")
    walk.choose("id_targets-0-provider_model", "gamma", "local/gamma")
    walk.submit("_continue")
    walk.present(".messagelist .success")
    assert route_models() == ["gamma", "beta"]
    assert chat(gateway, copied).headers["x-gateway-model"] == "gamma"
    change = ConfigVersion.objects.order_by("-pk").first()
    assert change is not None and change.pk > before.pk

    # The versions: the change, its diff with the one before, and the rollback.
    walk.get("/admin/")
    walk.find("#link-config-versions").click()
    walk.present(f"#version-row-{change.pk}")
    walk.screenshot("14-config-versions")
    walk.find(f"#version-link-{change.pk}").click()
    walk.present("#version-yaml")
    walk.screenshot("15-version")
    walk.find("#version-diff-previous").click()
    walk.present("#version-diff")
    removed = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "tr.diff-remove")]
    added = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "tr.diff-add")]
    assert any("alpha" in line for line in removed), removed
    assert any("gamma" in line for line in added), added
    walk.screenshot("16-version-diff")

    walk.get("/admin/routing/configversion/")
    walk.find(f"#version-link-{before.pk}").click()
    walk.find("#version-rollback").click()
    report = walk.present("#rollback-report")
    assert report.text.strip()
    walk.screenshot("17-rollback-confirm")
    walk.find("#rollback-confirm").click()
    rolled_back = walk.present(".messagelist .success").text
    assert f"Rolled back to version {before.pk}" in rolled_back
    assert walk.find("#version-rollback-of").text == f"version {before.pk}"
    walk.screenshot("18-rolled-back")
    assert route_models() == ["alpha", "beta"]
    assert Route.objects.get(pk=route.pk).strategy == "fallback"
    answer = chat(gateway, copied)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-gateway-model"] == "alpha"
    gateway.drain()

    assert [path.name for path in walk.saved] == sorted(
        p.name for p in SCREENSHOTS.glob("ops-*.png")
    )
    request.node.user_properties.append(
        ("screenshots", f"{len(walk.saved)} pages in {SCREENSHOTS}/ops-*.png")
    )
    request.node.user_properties.append(("walk seconds", f"{time.monotonic() - started:.1f}"))
