"""The CSV import console in a real browser: an agent uploads a file mixing good and bad
orders, watches it finish, reads the problems, downloads the error report and finds the
good orders in the order search. Screenshots of each step are kept."""

from __future__ import annotations

import csv
import io
import re
import uuid

import pytest

from tests.browser.conftest import sign_in
from tests.conftest import World
from tests.integration.test_csv_import import BILLING_COLUMNS, COLUMNS, csv_text, order_rows

pytestmark = [
    pytest.mark.browser,
    # See test_console_browser.py: static files would otherwise fail on a Litestar warning.
    pytest.mark.filterwarnings("ignore:AuthenticationMiddleware.exclude_path_pattern:DeprecationWarning"),
]


async def test_agent_imports_a_file_with_good_and_bad_orders(
    world: World, new_page, screenshot_dir, tmp_path
):
    prefix = f"WEB{uuid.uuid4().hex[:6].upper()}"
    good = [f"{prefix}-GOOD-{n}" for n in range(3)]
    bad_currency, bad_quantity, half_billed = f"{prefix}-CUR", f"{prefix}-QTY", f"{prefix}-BILL"
    paris = {"bill_line1": "Rue de Rivoli 5", "bill_city": "Paris", "bill_postal_code": "75001",
             "bill_country": "FR"}  # fmt: skip
    rows = [
        *order_rows(good[0], lines=2),
        *order_rows(bad_currency, lines=1, currency="XYZ"),
        *order_rows(good[1], lines=1, **paris),
        *order_rows(bad_quantity, lines=2),
        *order_rows(half_billed, lines=1, bill_name="Accounts payable"),
        *order_rows(good[2], lines=3),
    ]
    rows[5]["quantity"] = "two"  # the bad-quantity order's second line: file row 7
    file = tmp_path / "acme-november.csv"
    file.write_text(csv_text(rows, columns=[*COLUMNS, *BILLING_COLUMNS]), encoding="utf-8")

    page = await new_page()
    await sign_in(page, world.agent_a)
    await page.goto("/console/imports")
    await page.locator("#import-form").wait_for()
    await page.screenshot(path=str(screenshot_dir / "imports-01-page.png"), full_page=True)

    await page.set_input_files('input[name="file"]', str(file))
    await page.get_by_role("button", name="Import").click()
    status = page.locator('#import-progress [data-testid="import-status"]')
    await status.filter(has_text=re.compile(r"^done$")).wait_for(timeout=30_000)

    def fact(name: str):
        return page.locator(f'#import-progress dl.facts dt:text-is("{name}") + dd')

    assert await fact("Rows read").inner_text() == str(len(rows)) == "10"
    assert await fact("Orders created").inner_text() == "3"
    assert await fact("Already imported").inner_text() == "0"
    assert await fact("Orders refused").inner_text() == "3 (4 rows)"
    assert (await fact("Problems").inner_text()).startswith("5")

    problems = page.locator('#import-progress [data-testid="import-problems"] tbody tr')
    assert await problems.count() == 5
    listed = [
        [cell.strip() for cell in await row.locator("td").all_inner_texts()] for row in await problems.all()
    ]
    required = "is required when the order has a billing address (any bill_ column filled in)"
    assert listed == [
        ["4", bad_currency, "currency", "'XYZ' is not an ISO 4217 currency code"],
        ["7", bad_quantity, "quantity", "'two' is not a whole number"],
        ["8", half_billed, "bill_line1", required],
        ["8", half_billed, "bill_city", required],
        ["8", half_billed, "bill_country", required],
    ]
    # The finished import heads the recent list below the form.
    recent = page.locator("#recent-imports tbody tr").first
    assert "acme-november.csv" in await recent.inner_text()
    await page.screenshot(path=str(screenshot_dir / "imports-02-result.png"), full_page=True)

    async with page.expect_download() as downloading:
        await page.locator("#import-progress").get_by_role("link", name=re.compile("error report")).click()
    download = await downloading.value
    assert download.suggested_filename == "acme-november-errors.csv"
    report = list(csv.reader(io.StringIO((await download.path()).read_bytes().decode("utf-8-sig"))))
    assert report[0] == ["row", "external_ref", "column", "message"]
    assert [r[:3] for r in report[1:]] == [[r[0], r[1], r[2]] for r in listed]

    await page.goto(f"/console/search?q={prefix}")
    results = page.locator("#search-results tbody tr")
    await results.first.wait_for()
    found = await page.locator("#search-results").inner_text()
    assert await results.count() == 3
    for reference in good:
        assert reference in found
    for reference in (bad_currency, bad_quantity, half_billed):
        assert reference not in found
    await page.screenshot(path=str(screenshot_dir / "imports-03-orders-found.png"), full_page=True)
