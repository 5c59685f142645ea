"""The reports in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by
Playwright. No console errors, visible scores, a failing gradient's heatmap on screen, the
summary's sort working, nothing of the student's run; screenshots saved under tmp_path."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from grader.api import GradeRequest, grade_submission
from grader.judge.grading import GradingOptions
from grader.output.report import write_reports
from grader.output.results import read_result, write_result

from conftest import SOLUTION, SUBMISSIONS, with_overrides

CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip("Chromium is not installed (/usr/bin/chromium; Debian package 'chromium', which "
                "scripts/test.sh installs)", allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402  (test extras)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PWNED = "<script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\">"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """Reports and summary for a small class: right, wrong, a printer of markup, ungraded."""
    root = tmp_path_factory.mktemp("class")
    request = GradeRequest(options=GradingOptions(train_steps=2))
    sources = {
        "ada.py": with_overrides(SUBMISSIONS / "wrong" / "forgot_counts_branch.py"),
        "bea.py": with_overrides(SUBMISSIONS / "wrong" / "missing_keepdim.py"),
        "cyd.py": SOLUTION.read_text() + f"\nprint({PWNED!r})\n",
        "dov.py": "def dprobs(:\n",
    }
    paths = []
    for name, code in sources.items():
        src = root / "submissions" / name
        src.parent.mkdir(exist_ok=True)
        src.write_text(code)
        result = grade_submission(src, request=request)
        paths.append(root / "results" / f"{name}.json")
        write_result(result, paths[-1])
    # a fourth graded student with a lower score, so that sorting by score reorders the table
    low = dataclasses.replace(read_result(paths[0]), submission="eve.py", score=3.0)
    paths.append(root / "results" / "eve.json")
    write_result(low, paths[-1])
    write_reports(paths, root / "site")
    return root / "site"


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


class Console:
    def __init__(self, page) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type in ("error", "warning")
                else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.errors.append(f"request {r.url}")
                if not r.url.startswith(("file:", "data:")) else None)


def open_page(browser, path: Path, *, javascript: bool = True):
    context = browser.new_context(viewport={"width": 1200, "height": 900},
                                  java_script_enabled=javascript)
    page = context.new_page()
    console = Console(page)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, console


def test_a_student_report_shows_scores_and_the_failing_heatmap(browser, site, tmp_path):
    page, console = open_page(browser, site / "ada.py.html")
    assert page.locator("#total-score").inner_text() == "33 / 34"
    assert page.locator("#total-score").is_visible()
    assert "dcounts" in page.locator("#first-wrong").inner_text()
    card = page.locator("#ex1-dcounts")
    assert card.get_attribute("open") is not None
    for label in ("expected", "actual", "difference"):
        svg = card.locator(f"figure[data-label='{label}'] svg.map")
        svg.scroll_into_view_if_needed()
        assert svg.is_visible()
        box = svg.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 100, box
    # the diff map is painted, not blank: at least two colours of cells
    assert card.locator("figure[data-label='difference'] path").count() >= 2
    card.screenshot(path=str(tmp_path / "report-dcounts.png"))
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert console.errors == []


def test_a_wrong_shape_shows_both_shapes(browser, site, tmp_path):
    page, console = open_page(browser, site / "bea.py.html")
    card = page.locator("#ex1-dcounts_sum_inv")
    assert "wrong shape" in card.locator("> summary").inner_text()
    assert card.locator("svg.map").count() == 2
    assert card.locator("figure[data-label='actual'] svg.map").bounding_box()["height"] > 0
    page.screenshot(path=str(tmp_path / "report-shape.png"))
    assert console.errors == []


def test_the_students_output_is_text_and_never_runs(browser, site, tmp_path):
    page, console = open_page(browser, site / "cyd.py.html")
    assert page.evaluate("window.pwned") is None
    assert "<script>window.pwned = 1</script>" in page.locator("pre.output").inner_text()
    assert page.locator("#all-passed").is_visible()
    page.screenshot(path=str(tmp_path / "report-output.png"))
    assert console.errors == []


def test_expand_and_collapse_all(browser, site):
    page, console = open_page(browser, site / "ada.py.html")
    page.get_by_role("button", name="expand all").click()
    assert page.locator("details.gradient:not([open])").count() == 0
    page.get_by_role("button", name="collapse all").click()
    assert page.locator("details.gradient[open]").count() == 0
    assert console.errors == []


def test_the_report_reads_the_same_with_javascript_off(browser, site, tmp_path):
    page, console = open_page(browser, site / "ada.py.html", javascript=False)
    assert page.locator("#total-score").inner_text() == "33 / 34"
    svg = page.locator("#ex1-dcounts figure[data-label='difference'] svg.map")
    svg.scroll_into_view_if_needed()
    assert svg.bounding_box()["width"] > 100
    assert not page.get_by_role("button", name="expand all").is_visible()  # needs the script
    page.locator("#ex1-dlogprobs > summary").click()                         # <details> still works
    assert page.locator("#ex1-dlogprobs").get_attribute("open") is not None
    page.screenshot(path=str(tmp_path / "report-nojs.png"))
    assert console.errors == []


def _submissions(page) -> list[str]:
    return page.locator("#students-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.submission)")


def test_the_summary_sorts_and_links_to_each_report(browser, site, tmp_path):
    page, console = open_page(browser, site / "index.html")
    assert page.locator("#counts").inner_text().startswith("5 submissions · 4 graded")
    assert page.locator("#histogram svg").bounding_box()["width"] > 200
    assert "dov.py" in page.locator("#ungraded").inner_text()
    before = _submissions(page)
    assert before == sorted(before)
    page.locator("#students-table th", has_text="score").get_by_role("button").click()
    ascending = _submissions(page)
    assert ascending != before and ascending[:2] == ["dov.py", "eve.py"]
    assert page.locator("#students-table th", has_text="score").get_attribute("aria-sort") == \
        "ascending"
    page.locator("#students-table th", has_text="score").get_by_role("button").click()
    assert _submissions(page)[0] == "cyd.py"                 # 34 / 34 first
    page.screenshot(path=str(tmp_path / "summary.png"), full_page=True)
    page.get_by_role("link", name="ada.py").first.click()
    page.wait_for_load_state("load")
    assert page.url.endswith("ada.py.html")
    assert page.locator("#total-score").inner_text() == "33 / 34"
    assert console.errors == []


def test_the_summary_matrix_shows_status_as_text_too(browser, site):
    page, console = open_page(browser, site / "index.html")
    cell = page.locator("#matrix td.m-wrong").first
    assert cell.is_visible() and cell.inner_text().split() == ["✗", "wrong"]  # the word: for readers
    assert "wrong" in cell.get_attribute("title")
    assert console.errors == []
