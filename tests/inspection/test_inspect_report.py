"""`crawler inspect FILE --report report.html`: one offline file, inert, that a browser renders.

The browser test needs the Debian ``chromium`` package and the ``playwright`` PyPI package
(it drives /usr/bin/chromium; ``playwright install`` is never needed). It is skipped when they
are missing, except in CI (CI=true), where it fails instead.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest
from fixtures.inspect_records import failed, inspect, inspect_json, record, write_jsonl

HOSTILE_URL = 'https://evil.example/"><script>alert(1)</script><img src=x onerror=alert(2)>'
HOSTILE_TITLE = "</td></tr></table><script>alert(3)</script>"
HOSTILE_MESSAGE = "<img src=x onerror=alert(4)> & friends"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def crawl_records() -> list[dict]:
    start = datetime(2026, 11, 22, 1, 0, tzinfo=timezone.utc)
    kinds = ["timeout", "connection", "http", "robots", "blocked", "parse"]
    out = []
    for i in range(600):
        when = (start + timedelta(seconds=i * 3)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        url = f"https://h{i % 9}.example/p/{i}"
        crawl_id = "20261122T010000Z-1a2b" if i < 400 else "20261122T070000Z-3c4d"
        changed = None if i < 400 else (i % 3 == 0)
        if i % 10 == 0:
            kind = kinds[i // 10 % len(kinds)]
            out.append(failed(url, kind, status=500 if kind == "http" else None, fetched_at=when,
                              crawl_id=crawl_id, elapsed_ms=float(i % 400)))
        else:
            out.append(record(url, fetched_at=when, crawl_id=crawl_id, changed=changed, elapsed_ms=1.5 * (i % 97) + 1,
                              status=301 if i % 17 == 0 else 200, data={"title": f"Page {i}", "price": None}))
    out.append(failed(HOSTILE_URL, "http", status=404, data={"title": HOSTILE_TITLE},
                      error={"type": "http", "message": HOSTILE_MESSAGE},
                      fetched_at=out[-1]["fetched_at"], crawl_id="20261122T070000Z-3c4d"))
    out.append(record(HOSTILE_URL + "/changed", data={"title": HOSTILE_TITLE}, changed=True,
                      fetched_at=out[-1]["fetched_at"], crawl_id="20261122T070000Z-3c4d"))
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    directory = tmp_path_factory.mktemp("report")
    path = write_jsonl(directory / "crawl.jsonl", crawl_records())
    html_path = directory / "report.html"
    code, _, err = inspect(path, "--report", html_path)
    assert code == 0, err
    return path, html_path


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += attrs

    def handle_data(self, data):
        self.text.append(data)


def parsed(html_path) -> Elements:
    elements = Elements()
    elements.feed(html_path.read_text(encoding="utf-8"))
    return elements


def test_report_is_one_offline_file_with_no_script_and_no_external_reference(report):
    _, html_path = report
    html = html_path.read_text(encoding="utf-8")
    elements = parsed(html_path)
    assert "script" not in elements.tags and "img" not in elements.tags and "link" not in elements.tags
    assert not [a for a in elements.attributes if a[0] in ("src", "href") or a[0].startswith("on")]
    assert "http-equiv" in html and "default-src 'none'" in html
    assert elements.tags.count("svg") >= 4


def test_hostile_record_content_appears_as_text(report):
    _, html_path = report
    text = "".join(parsed(html_path).text)
    for hostile in (HOSTILE_URL, HOSTILE_MESSAGE):
        assert hostile in text
    assert HOSTILE_TITLE in text  # in the recrawl table's data column


def test_report_holds_the_summary_errors_and_recrawl_changes(report):
    path, html_path = report
    summary = inspect_json(path)
    text = " ".join(parsed(html_path).text)
    assert f"{summary['records']:,}" in text and f"{summary['failed']:,}" in text
    html = html_path.read_text(encoding="utf-8")
    errors_table = html.split('id="errors"')[1].split("</section>")[0]
    assert errors_table.count("<tr>") == summary["failed"] + 1  # rows and the header
    recrawl = html.split('id="recrawl"')[1].split("</section>")[0]
    assert "https://h6.example/p/402" in recrawl  # 402 % 3 == 0: changed
    assert "https://h5.example/p/401" not in recrawl  # unchanged


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    in_ci = os.environ.get("CI", "").lower() == "true"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    executable = _chromium()
    if sync_playwright is None or executable is None:
        missing = "the playwright package" if sync_playwright is None else "chromium"
        if in_ci:
            pytest.fail(f"CI=true but {missing} is missing: the report must be checked in a browser")
        pytest.skip(f"{missing} is not installed (apt-get install chromium; pip install playwright)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_report_renders_in_headless_chromium_without_errors_and_with_charts(report, browser):
    _, html_path = report
    page = browser.new_page()
    problems, requests, dialogs = [], [], []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(html_path.as_uri(), wait_until="load")
    assert problems == [] and dialogs == []
    assert requests == [html_path.as_uri()]  # nothing fetched besides the file itself
    charts = page.locator("svg")
    assert charts.count() >= 4
    for i in range(charts.count()):
        box = charts.nth(i).bounding_box()
        assert box and box["width"] > 100 and box["height"] > 20
        assert charts.nth(i).locator("rect").count() > 0
    assert page.locator("script").count() == 0
    assert HOSTILE_URL in page.inner_text("#errors")
    page.close()


def test_report_shows_what_changed_field_by_field_since_the_previous_crawl(tmp_path):
    first, second = "20261122T010000Z-aaaa", "20261123T010000Z-bbbb"
    before = [record(f"https://r.example/{i}", crawl_id=first, data={"title": f"T{i}", "price": "1"})
              for i in range(5)]
    after = [record(f"https://r.example/{i}", crawl_id=second, changed=i in (1, 3),
                    data={"title": HOSTILE_TITLE if i == 3 else f"T{i}", "price": "2" if i == 1 else "1"})
             for i in range(5)]
    path = write_jsonl(tmp_path / "recrawl.jsonl", before + after)
    html_path = tmp_path / "r.html"
    assert inspect(path, "--report", html_path)[0] == 0
    html = html_path.read_text(encoding="utf-8")
    recrawl = html.split('id="recrawl"')[1].split("</section>")[0]
    assert "0 new, 0 gone, 0 status changes, 2 with changed data" in recrawl
    row = '<td class="url">https://r.example/1</td><td>price</td><td>&quot;1&quot;</td><td>&quot;2&quot;</td>'
    assert row in recrawl
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in recrawl and "<script>" not in html


def test_report_lists_records_without_required_fields_per_rule_and_field(tmp_path):
    """The ``missing``/``invalid`` keys: per rule the incomplete records, per field how many
    lacked it or held a value of the wrong type, and the first such pages (escaped)."""
    records = [record(f"https://q.example/{i}", rule="product", data={"title": f"T{i}", "price": None},
                      missing=["price"]) for i in range(3)]
    records[0]["invalid"] = ["price"]
    records[1]["data"]["sku"], records[1]["missing"] = None, ["price", "sku"]
    records.append(record(HOSTILE_URL, rule="product", data={"title": None}, missing=["title"]))
    records += [record(f"https://q.example/ok{i}", rule="product", data={"title": "T", "price": 1.5})
                for i in range(4)]
    path = write_jsonl(tmp_path / "req.jsonl", records)
    html_path = tmp_path / "q.html"
    assert inspect(path, "--report", html_path)[0] == 0
    html = html_path.read_text(encoding="utf-8")
    section = html.split('id="coverage"')[1].split("</section>")[0]
    assert "4 record(s) without required fields (list them: --where &#x27;missing&#x27;)" in section
    for field, missing, invalid in (("price", 3, 1), ("sku", 1, 0), ("title", 1, 0)):
        row = (f'<tr><td>product</td><td class="n">4</td><td>{field}</td>'
               f'<td class="n">{missing}</td><td class="n">{invalid}</td></tr>')
        assert row in section, field
    assert '<td class="url">https://q.example/0</td>' in section
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section and "<script>" not in html


def test_report_of_complete_records_has_no_incomplete_table(report):
    _, html_path = report
    section = html_path.read_text(encoding="utf-8").split('id="coverage"')[1].split("</section>")[0]
    assert "Field coverage per rule" in section and "without required fields" not in section
