"""HTML reports: views of failing gradients, every results field rendered and escaped, the class
summary, a folder of reports from saved JSON, and the CLI verbs that write them."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import math
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest
import torch

from grader.api import GradeRequest, grade_submission
from grader.judge.compare import compare_gradient
from grader.judge.grading import GradingOptions
from grader.output.report import find_results, render_report, render_summary, write_report, write_reports
from grader.output.results import IntegrityFlag, Result, TensorView, read_result, write_result
from grader.judge.views import MAX_CELLS, failure_fields, layout_2d, tensor_view

from conftest import ROOT, SOLUTION, SUBMISSIONS, short_wall_time, with_overrides

SOLUTION_CODE = SOLUTION.read_text()

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}
SVG_SELF_CLOSING = {"rect", "line", "path", "circle", "stop"}
EVIL = "<script>alert('pwned')</script><img src=x onerror=alert(1)>\"'&amp;"


class Page(HTMLParser):
    """A strict reading of one page: nesting, ids, links, scripts, attributes, text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: list[str] = []
        self.hrefs: list[str] = []
        self.labelledby: list[str] = []
        self.scripts = 0
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.chunks: list[str] = []
        self.in_script_or_style = 0
        self.feed(text)
        self.close()
        if self.stack:
            self.errors.append(f"unclosed: {self.stack}")

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.chunks).split())

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if "id" in a:
            self.ids.append(a["id"])
        if "href" in a:
            self.hrefs.append(a["href"])
        if "aria-labelledby" in a:
            self.labelledby += a["aria-labelledby"].split()
        if tag == "script":
            self.scripts += 1
        if tag in ("script", "style"):
            self.in_script_or_style += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID and tag not in SVG_SELF_CLOSING:
            self.errors.append(f"<{tag}/> self-closed")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.in_script_or_style -= 1
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data):
        if not self.in_script_or_style:
            self.chunks.append(data)


def norm(text: str) -> str:
    return " ".join(text.split())


def parse(text: str) -> Page:
    page = Page(text)
    assert page.errors == [], page.errors[:5]
    assert len(page.ids) == len(set(page.ids)), "duplicate ids"
    missing = [h for h in page.hrefs if h.startswith("#") and h[1:] not in page.ids]
    assert missing == [], f"links to nowhere: {missing}"
    assert set(page.labelledby) <= set(page.ids)
    return page


@pytest.fixture(scope="module")
def request_quick() -> GradeRequest:
    return GradeRequest(options=GradingOptions(train_steps=2))


@pytest.fixture(scope="module")
def wrong_result(request_quick, tmp_path_factory) -> Result:
    """A graded submission that forgot the second branch of counts: dcounts is wrong."""
    path = tmp_path_factory.mktemp("sub") / "forgot_counts_branch.py"
    path.write_text(with_overrides(SUBMISSIONS / "wrong" / "forgot_counts_branch.py")
                    + "\nprint('hello from the student <b>bold</b>')\n")
    return grade_submission(path, request=request_quick)


@pytest.fixture(scope="module")
def shape_result(request_quick, tmp_path_factory) -> Result:
    path = tmp_path_factory.mktemp("sub") / "missing_keepdim.py"
    path.write_text(with_overrides(SUBMISSIONS / "wrong" / "missing_keepdim.py"))
    return grade_submission(path, request=request_quick)


def gradient(result: Result, name: str, exercise: str = "ex1"):
    ex = next(e for e in result.exercises if e.name == exercise)
    return next(g for g in ex.gradients if g.name == name)


# ---------------------------------------------------------------- views


def test_layout_draws_1d_as_a_row_and_3d_as_first_dim_by_the_rest():
    assert layout_2d(()) == (1, 1)
    assert layout_2d((27,)) == (1, 27)
    assert layout_2d((32, 3, 10)) == (32, 30)
    assert layout_2d((64, 27)) == (64, 27)


def test_a_small_tensor_is_kept_cell_for_cell():
    x = torch.arange(32 * 27, dtype=torch.float32).reshape(32, 27) / 7
    v = tensor_view(x, label="expected")
    assert v.pooling == "none" and v.cell == (1, 1) and v.shape == (32, 27)
    assert len(v.values) == 32 and all(len(r) == 27 for r in v.values)
    assert v.values[3][5] == pytest.approx(float(x[3, 5]), rel=1e-3)


def test_a_large_tensor_is_pooled_to_at_most_32_by_32():
    x = torch.randn(200, 300, generator=torch.Generator().manual_seed(0))
    v = tensor_view(x, label="actual")
    assert len(v.values) == MAX_CELLS and all(len(r) == MAX_CELLS for r in v.values)
    assert v.pooling == "mean" and v.cell == (7, 10)
    # mean pooling: the overall mean survives
    flat = [c for r in v.values for c in r]
    assert sum(flat) / len(flat) == pytest.approx(float(x.mean()), abs=0.02)


def test_max_pooling_keeps_one_wrong_element_visible():
    diff = torch.zeros(128, 128)
    diff[77, 5] = 3.0
    v = tensor_view(diff, label="difference", pooling="max", worst_index=(77, 5))
    assert max(c for r in v.values for c in r) == 3.0
    assert v.worst_cell == (77 * 32 // 128, 5 * 32 // 128)
    assert v.values[v.worst_cell[0]][v.worst_cell[1]] == 3.0


def test_nan_and_inf_cells_are_none_and_the_rest_stay_numbers():
    x = torch.ones(4, 4)
    x[1, 2] = float("nan")
    x[3, 3] = float("inf")
    v = tensor_view(x, label="actual")
    assert v.values[1][2] is None and v.values[3][3] is None and v.values[0][0] == 1.0


def test_scalars_and_empty_tensors_do_not_break_the_views():
    assert tensor_view(torch.tensor(2.5), label="actual").values == ((2.5,),)
    assert tensor_view(torch.zeros(0, 3), label="actual").values == ()


def test_failure_fields_for_a_shape_mismatch_show_both_tensors_and_no_difference():
    f = failure_fields(torch.zeros(32), torch.zeros(32, 1), None)
    assert [v.label for v in f["views"]] == ["expected", "actual"]
    assert f["views"][0].shape == (32, 1) and f["views"][1].shape == (32,)


def test_failure_fields_take_the_mismatch_count_from_the_comparison():
    expected = torch.zeros(8, 8)
    actual = expected.clone()
    actual[2, 3], actual[5, 1] = 1.0, 0.5
    f = failure_fields(actual, expected, compare_gradient(actual, expected))
    assert f["mismatched"] == 2 and f["numel"] == 64 and f["worst_index"] == (2, 3)
    assert f["worst_actual"] == 1.0 and f["worst_expected"] == 0.0
    assert [v.label for v in f["views"]] == ["expected", "actual", "difference"]


def test_a_wrong_answer_compared_in_the_tensor_s_shape_is_pictured_in_it():
    """(64,) for a (1, 64) tensor is compared on its values, so its difference can be drawn."""
    expected = torch.zeros(1, 64)
    actual = torch.zeros(64)
    actual[7] = 1.0
    f = failure_fields(actual, expected, compare_gradient(actual, expected))
    assert f["mismatched"] == 1 and f["worst_index"] == (0, 7)
    assert [(v.label, v.shape) for v in f["views"]] == [
        ("expected", (1, 64)), ("actual", (1, 64)), ("difference", (1, 64))]


def test_a_comparison_about_other_tensors_is_not_used_for_the_count():
    # exercise 4's training check compares parameters but shows the loss curves
    params = compare_gradient(torch.ones(4, 4) * 2, torch.ones(4, 4))
    f = failure_fields(torch.tensor([3.0, 2.5, 2.0]), torch.tensor([3.0, 2.4, 1.9]), params)
    assert f["mismatched"] == 2 and f["worst_index"] == (2,) and f["numel"] == 3


def test_failure_fields_point_at_the_first_nonfinite_element():
    actual = torch.ones(3, 3)
    actual[1, 1] = float("nan")
    f = failure_fields(actual, torch.ones(3, 3), None)
    assert f["worst_index"] == (1, 1) and f["mismatched"] == 1 and f["worst_actual"] is None


# ---------------------------------------------------------------- grading fills the views


def test_a_failing_gradient_carries_views_and_the_mismatch_summary(wrong_result):
    g = gradient(wrong_result, "dcounts")
    assert g.status == "wrong"
    assert [v.label for v in g.views] == ["expected", "actual", "difference"]
    assert all(v.shape == (32, 27) and len(v.values) == 32 for v in g.views)
    assert g.numel == 32 * 27 and 0 < g.mismatched <= g.numel
    assert g.worst_index is not None and f"{g.worst_index}" in g.message
    assert "isolated" in g.views_from and "lecture" in g.views_from


def test_passing_gradients_carry_no_pictures(wrong_result):
    g = gradient(wrong_result, "dprobs")
    assert g.passed and g.views == () and g.mismatched is None


def test_a_wrong_shape_gets_pictures_of_both_shapes(shape_result):
    g = gradient(shape_result, "dcounts_sum_inv")
    assert g.status == "shape"
    assert {v.label: v.shape for v in g.views} == {"expected": (32, 1), "actual": (32,)}


def test_views_round_trip_through_the_results_json(wrong_result, shape_result, tmp_path):
    for r in (wrong_result, shape_result):
        write_result(r, tmp_path / "r.json")
        assert read_result(tmp_path / "r.json") == r


def test_infinite_and_nan_floats_are_written_as_strings_in_strict_json(wrong_result, tmp_path):
    ex = wrong_result.exercises[0]
    g = dataclasses.replace(ex.gradients[0], maxdiff=float("inf"), worst_actual=float("-inf"))
    r = dataclasses.replace(wrong_result, loss=float("nan"), exercises=(
        dataclasses.replace(ex, gradients=(g, *ex.gradients[1:])), *wrong_result.exercises[1:]))
    write_result(r, tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text(), parse_constant=pytest.fail)
    saved = data["exercises"][0]["gradients"][0]
    assert (data["loss"], saved["maxdiff"], saved["worst_actual"]) == ("nan", "inf", "-inf")
    back = read_result(tmp_path / "r.json")
    assert back.exercises[0].gradients[0].maxdiff == float("inf") and math.isnan(back.loss)


# ---------------------------------------------------------------- the student report


def poison(obj):
    """Every string in a results tree, with markup appended that must come out as text."""
    if isinstance(obj, str):
        return obj + EVIL
    if isinstance(obj, tuple):
        return tuple(poison(x) for x in obj)
    if dataclasses.is_dataclass(obj):
        changes = {f.name: poison(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                   if f.name not in ("status", "schema", "label", "mode")}
        return dataclasses.replace(obj, **changes)
    return obj


def strings(obj, path="result"):
    """(where, text) for every non-empty string field of a results tree."""
    if isinstance(obj, str):
        if obj.strip():
            yield path, obj
    elif isinstance(obj, tuple):
        for i, x in enumerate(obj):
            yield from strings(x, f"{path}[{i}]")
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from strings(getattr(obj, f.name), f"{path}.{f.name}")


def test_the_report_is_well_formed_with_scores_first_wrong_step_and_every_gradient(wrong_result):
    page = parse(render_report(wrong_result))
    text = page.text
    assert "33 / 34" in text and wrong_result.submission in text
    assert "First wrong step: dcounts" in text
    for g in wrong_result.gradients():
        assert g.name in text and norm(g.forward) in text
    # backward order: dlogprobs before dprobs before dcounts ... before dC
    order = [a["id"] for t, a in page.tags if t == "details" and a.get("id", "").startswith("ex1-")]
    assert order == [f"ex1-{g.name}" for g in wrong_result.exercises[0].gradients]


def test_every_string_field_of_the_results_appears_in_the_report(wrong_result, shape_result):
    for r in (wrong_result, shape_result):
        r = dataclasses.replace(r, integrity=(IntegrityFlag("autograd", "called loss.backward()"),),
                                notes=("a note",))
        text = parse(render_report(r)).text
        for where, value in strings(r):
            if where.endswith((".label", ".schema")) or ".views" in where:
                continue
            needle = norm(value)[-200:]      # long output and tracebacks: the tail
            assert needle in text, f"{where} = {value[:80]!r} not rendered"


def test_every_string_field_is_escaped_a_students_script_is_text(wrong_result):
    evil = poison(dataclasses.replace(
        wrong_result, integrity=(IntegrityFlag("autograd", "used .grad"),), notes=("n",)))
    out = render_report(evil)
    page = parse(out)
    assert page.scripts == 1                                  # ours only
    assert not [a for t, a in page.tags for k in a if k.startswith("on")]
    assert not [a for t, a in page.tags if t == "img"]
    assert page.text.count("<script>alert('pwned')</script>") >= 20
    assert "&lt;script&gt;alert(" in out


def test_the_page_fetches_nothing_and_runs_only_its_own_script(wrong_result):
    out = render_report(wrong_result)
    page = parse(out)
    assert not [a for t, a in page.tags if "src" in a]
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", out))
    assert urls <= {"http://www.w3.org/2000/svg"}
    csp = next(a["content"] for t, a in page.tags if a.get("http-equiv") == "Content-Security-Policy")
    script = re.search(r"<script>(.*?)</script>", out, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp and "default-src 'none'" in csp


def test_failing_gradients_show_heatmaps_with_text_alternatives(wrong_result):
    page = parse(render_report(wrong_result))
    maps = [a for t, a in page.tags if t == "svg" and "map" in (a.get("class") or "").split()]
    assert len(maps) == 3                              # dcounts: expected, actual, difference
    assert all(a.get("role") == "img" and a.get("aria-labelledby") for a in maps)
    assert "Heatmap of |actual − expected| for dcounts" in page.text
    assert "Mismatched elements:" in page.text and "Greatest absolute difference:" in page.text


def test_status_is_written_out_not_only_coloured(wrong_result):
    text = parse(render_report(wrong_result)).text
    assert "✗ wrong" in text and "✓ exact" in text and "≈ approximate" in text


def with_gradient(result: Result, name: str, **changes) -> Result:
    """``result`` with the fields of gradient ``name`` (exercise 1) changed."""
    ex = result.exercises[0]
    gs = tuple(dataclasses.replace(g, **changes) if g.name == name else g for g in ex.gradients)
    return dataclasses.replace(result, exercises=(dataclasses.replace(ex, gradients=gs),
                                                  *result.exercises[1:]))


def test_values_beyond_the_scale_take_the_end_colours_and_nan_cells_are_hatched(wrong_result):
    views = (TensorView("expected", (1, 3), ((-1.0, 0.0, 1.0),)),
             TensorView("actual", (1, 4), ((-50.0, 0.0, 50.0, None),)),
             TensorView("difference", (1, 4), ((49.0, 0.0, 49.0, None),)))
    out = render_report(with_gradient(wrong_result, "dcounts", views=views))
    figures = dict(re.findall(r'<figure class="heatmap" data-label="(\w+)">(.*?)</figure>', out,
                              re.S))

    def cells(label):
        return re.findall(r'<path fill="([^"]+)" d="([^"]+)">', figures[label])

    # PuOr from orange (-1 and below) through white (0) to purple (1 and above): a runaway
    # actual saturates at the ends of expected's scale
    assert cells("actual") == [("#b35806", "M0 0h1v1h-1z"), ("#f7f7f7", "M1 0h1v1h-1z"),
                               ("#542788", "M2 0h1v1h-1z"),
                               ("url(#ex1-dcounts-map1-hatch)", "M3 0h1v1h-1z")]
    # viridis from 0 (dark purple) to the largest difference (yellow)
    assert cells("difference") == [("#440154", "M1 0h1v1h-1z"),
                                   ("#fde725", "M0 0h1v1h-1zM2 0h1v1h-1z"),
                                   ("url(#ex1-dcounts-map2-hatch)", "M3 0h1v1h-1z")]


def test_runs_of_a_colour_are_one_rectangle_and_halfway_values_round_to_even(wrong_result):
    from grader.output.heatmap import _VALUE_COLOURS as colours    # 21: -1 .. 1 by 0.1
    # 0.25 and 0.75 of the scale lie halfway between levels: 2.5 -> 2, 7.5 -> 8, as round()
    rows = ((1.0, 0.25, 0.25, 0.75), (0.0, 0.0, -0.25, 1.0))
    views = (TensorView("expected", (2, 4), rows), TensorView("actual", (2, 4), rows),
             TensorView("difference", (2, 4), ((0.0,) * 4, (0.0,) * 4)))
    out = render_report(with_gradient(wrong_result, "dcounts", views=views))
    figure = re.search(r'<figure class="heatmap" data-label="expected">(.*?)</figure>', out,
                       re.S).group(1)
    paths = re.findall(r'<path fill="([^"]+)" d="([^"]+)">', figure)
    assert paths == [(colours[8], "M2 1h1v1h-1z"), (colours[10], "M0 1h2v1h-2z"),
                     (colours[12], "M1 0h2v1h-2z"), (colours[18], "M3 0h1v1h-1z"),
                     (colours[20], "M0 0h1v1h-1zM3 1h1v1h-1z")]


def test_a_hand_edited_view_with_a_short_row_still_renders_hatched_where_cells_lack(
        wrong_result):
    views = (TensorView("expected", (2, 3), ((1.0, 0.0, 1.0), (0.0,))),
             TensorView("actual", (2, 3), ((1.0, 0.0, 1.0), (0.0,))),
             TensorView("difference", (2, 3), ((0.0, 0.0, 0.0), (0.0,))))
    out = render_report(with_gradient(wrong_result, "dcounts", views=views))
    assert re.search(r'<path fill="url\(#ex1-dcounts-map0-hatch\)" d="M1 1h2v1h-2z"', out)


def test_a_status_the_grader_does_not_know_still_gets_an_escaped_badge(wrong_result):
    r = with_gradient(wrong_result, "dcounts", status="<i>odd</i>")
    for _ in range(2):                  # the second time too: badges are remembered per status
        page = parse(render_report(r))
        assert "? <i>odd</i>" in page.text and not [a for t, a in page.tags if t == "i"]


def test_the_student_id_and_the_link_back_to_the_summary(wrong_result):
    page = parse(render_report(wrong_result, student="s1234 Ada Lovelace", summary_href="../index.html"))
    assert "s1234 Ada Lovelace" in page.text and ("a", {"href": "../index.html"}) in page.tags


def test_a_hint_is_shown_when_present(wrong_result):
    ex = wrong_result.exercises[0]
    gs = tuple(dataclasses.replace(g, hint="counts is used twice") if g.name == "dcounts" else g
               for g in ex.gradients)
    r = dataclasses.replace(wrong_result,
                            exercises=(dataclasses.replace(ex, gradients=gs),
                                       *wrong_result.exercises[1:]))
    assert "Hint: counts is used twice" in parse(render_report(r)).text


def test_a_result_that_could_not_be_graded_says_why_at_the_top():
    r = Result(submission="bad.py", status="timeout", message="took longer than 60 s (time limit)",
               score=0.0, max_score=34.0, mode="isolated", loss=None, output="x" * 30_000)
    page = parse(render_report(r))
    assert "Could not be graded (timeout)" in page.text
    assert "Limits hit" in page.text and "the first 10000 characters are not shown" in page.text


def test_limits_hit_are_listed_from_the_verdicts_not_guessed_from_words(wrong_result):
    ex = wrong_result.exercises[0]
    hung = ex.gradients[0]
    hung = dataclasses.replace(hung, status="error", configs=(dataclasses.replace(
        hung.configs[0], status="error", limit="wall time",
        message="dlogprobs() took longer than 20 s (limit: wall time)"),))
    said = dataclasses.replace(ex.gradients[1], status="error", configs=(dataclasses.replace(
        ex.gradients[1].configs[0], status="error",
        message="raised ValueError: the limit of my patience was killed"),))
    r = dataclasses.replace(wrong_result, exercises=(
        dataclasses.replace(ex, gradients=(hung, said, *ex.gradients[2:])),
        *wrong_result.exercises[1:]),
        notes=("your code printed 5,000 bytes more than the 65,536 kept (limit: output bytes)",))
    page = parse(render_report(r))
    banner = page.text[page.text.index("Limits hit"):]
    assert "dlogprobs() took longer than 20 s (limit: wall time)" in banner
    assert "printed 5,000 bytes more than the 65,536 kept (limit: output bytes)" in banner
    assert "my patience" not in banner[:banner.index("(limit: output bytes)")], \
        "a student's message that says 'limit' is not a limit hit"


def test_a_stub_that_hangs_is_in_the_limits_banner_after_a_trip_through_json(tmp_path):
    path = tmp_path / "hangs.py"
    path.write_text(SOLUTION_CODE + "\ndef dprobs(dlogprobs, probs):\n    while True:\n        pass\n")
    r = grade_submission(path, request=GradeRequest(limits=short_wall_time(1.0),
                                                    options=GradingOptions(train_steps=1)))
    write_result(r, tmp_path / "results.json")
    page = parse(render_report(read_result(tmp_path / "results.json")))
    banner = page.text[page.text.index("Limits hit"):]
    assert "dprobs() took longer than 1 s (limit: wall time)" in banner
    assert "restarted 1 time(s)" in banner


# ---------------------------------------------------------------- the class summary


def synthetic(name: str, score: float, status: str = "graded", message: str | None = None,
              base: Result | None = None) -> Result:
    if base is not None:
        return dataclasses.replace(base, submission=name, score=score)
    return Result(submission=name, status=status, message=message, score=score, max_score=34.0,
                  mode="isolated", loss=None)


def test_the_summary_has_histogram_pass_rates_matrix_table_and_ungraded(wrong_result,
                                                                        shape_result):
    results = [synthetic("alice.py", 34.0, base=wrong_result),
               synthetic("bob.py", 33.0, base=shape_result),
               synthetic("carol.py", 33.0, base=wrong_result),
               synthetic("dave.py", 0.0, "error", "syntax error at line 1: <oops>")]
    links = {"alice.py": "alice.html", "dave.py": "dave.html"}
    page = parse(render_summary(results, links=links))
    text = page.text
    assert "4 submissions · 3 graded · 1 could not be graded" in text
    assert "90–100%: 3" in text                                       # histogram, as text
    rates = text[text.index("Which gradients"):text.index("Students")]
    assert rates.index("dcounts ") < rates.index("dlogprobs ")        # hardest first
    assert "67% 2 / 3" in rates                                       # dcounts: 2 of 3 wrong
    assert "dave.py : ! error syntax error at line 1: <oops>" in text
    cells = [a for t, a in page.tags if t == "td" and "cell" in (a.get("class") or "")]
    assert len(cells) == 3 * len(wrong_result.gradients())
    assert all(a["title"] for a in cells)
    assert ("a", {"href": "alice.html"}) in page.tags and ("a", {"href": "dave.html"}) in page.tags
    sortable = [a for t, a in page.tags if t == "table" and "sortable" in (a.get("class") or "")]
    assert len(sortable) == 2


def test_a_matrix_cell_says_not_graded_and_an_unknown_status_reads_as_itself(wrong_result):
    first = wrong_result.exercises[0]
    dropped = dataclasses.replace(wrong_result, submission="erin.py", exercises=(
        dataclasses.replace(first, gradients=first.gradients[1:]), *wrong_result.exercises[1:]))
    edited = dataclasses.replace(wrong_result, submission="fay.py", exercises=(
        dataclasses.replace(first, gradients=(
            dataclasses.replace(first.gradients[0], status="weird"), *first.gradients[1:])),
        *wrong_result.exercises[1:]))
    page = parse(render_summary([dropped, edited]))
    name = first.gradients[0].name
    titles = {a["title"] for t, a in page.tags if t == "td" and "cell" in (a.get("class") or "")}
    assert f"erin.py: {name} not graded" in titles
    assert f"fay.py: {name} weird" in titles and "? weird" in page.text


def test_the_summary_escapes_submission_names_and_messages():
    r = synthetic("<script>x()</script>.py", 0.0, "error", "<img src=x onerror=y()>")
    out = render_summary([r], links={r.submission: "javascript-free.html"})
    page = parse(out)
    assert page.scripts == 1 and "<script>x()</script>.py" in page.text
    assert not [a for t, a in page.tags if t == "img"]


def test_an_empty_class_still_renders():
    assert "0 submissions" in parse(render_summary([])).text


# ---------------------------------------------------------------- a folder of reports


def test_write_reports_renders_every_results_file_and_lists_unreadable_ones(wrong_result,
                                                                           shape_result, tmp_path):
    write_result(wrong_result, tmp_path / "in" / "a" / "results.json")
    write_result(wrong_result, tmp_path / "in" / "b" / "results.json")   # same submission name
    write_result(shape_result, tmp_path / "in" / "c.json")
    (tmp_path / "in" / "broken.json").write_text("{not json")
    (tmp_path / "in" / "gradescope.json").write_text(json.dumps({"score": 1}))
    # a batch's gradescope.json of an ungraded submission mentions the schema early on
    (tmp_path / "in" / "d").mkdir()
    (tmp_path / "in" / "d" / "gradescope.json").write_text(json.dumps(
        {"score": 0, "output": "x", "extra_data": {"schema": "backprop-grader/result/v1"}}))
    paths = find_results([tmp_path / "in"]) + [tmp_path / "in" / "broken.json"]
    assert tmp_path / "in" / "gradescope.json" not in paths
    assert tmp_path / "in" / "d" / "gradescope.json" not in paths
    written = write_reports(paths, tmp_path / "out")
    assert len(written.reports) == 4 and len({p.name for p in written.reports}) == 4
    assert written.unreadable == (f"{tmp_path / 'in' / 'broken.json'}: not valid JSON",)
    index = parse(written.summary.read_text())
    for href in (h for h in index.hrefs if not h.startswith(("#", "data:"))):
        assert (tmp_path / "out" / href).is_file(), href
    assert "broken.json : ! error could not read the results file: not valid JSON" in index.text
    assert str(tmp_path / "in" / "a" / "results.json") in index.text  # tells the two apart
    report = parse(written.reports[0].read_text())
    assert ("a", {"href": "index.html"}) in report.tags


def test_write_report_writes_one_page(wrong_result, tmp_path):
    path = write_report(wrong_result, tmp_path / "deep" / "report.html")
    assert "33 / 34" in parse(path.read_text()).text


# ---------------------------------------------------------------- CLI


def run(*args):
    return subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_check_html_writes_the_report(tmp_path):
    src = tmp_path / "wrong_sign.py"
    src.write_text(with_overrides(SUBMISSIONS / "wrong" / "wrong_sign.py"))
    p = run("check", str(src), "--steps", "1", "--html", str(tmp_path / "r.html"),
            "--json", str(tmp_path / "r.json"))
    assert p.returncode == 1, p.stdout + p.stderr
    text = parse((tmp_path / "r.html").read_text()).text
    assert "First wrong step: dbnmeani" in text


def test_report_renders_saved_json_without_running_code(wrong_result, tmp_path):
    write_result(wrong_result, tmp_path / "r1.json")
    # the submission is gone: the report needs nothing but the JSON
    p = run("report", str(tmp_path / "r1.json"), "--out", str(tmp_path / "site"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    assert "dcounts" in (tmp_path / "site" / "forgot_counts_branch.py.html").read_text()


def test_report_with_nothing_to_read_exits_2_with_one_line(tmp_path):
    p = run("report", str(tmp_path), "--out", str(tmp_path / "site"))
    assert p.returncode == 2 and "no results JSON" in p.stderr and "Traceback" not in p.stderr
    p = run("report", str(tmp_path / "missing.json"), "--out", str(tmp_path / "site"))
    assert p.returncode == 2 and "No such file" in p.stderr and "Traceback" not in p.stderr
