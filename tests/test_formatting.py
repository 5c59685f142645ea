"""Each output writes numbers its own way, and every output names the exercises from one place."""

import math

from grader.lecture.catalog import EXERCISES
from grader.output.formatting import EXERCISE_NAMES, EXERCISE_TITLES, export_number, \
    page_number, page_points, table_maxdiff


def test_the_terminal_table_gives_a_difference_two_significant_digits():
    assert [table_maxdiff(x) for x in (None, 0.0, 1.234e-7, 0.5, 123.0)] == \
        ["-", "0.0", "1.2e-07", "0.5", "1.2e+02"]


def test_the_pages_give_a_number_three_significant_digits_and_name_what_is_not_finite():
    assert [page_number(x) for x in (None, 0.0, 0, 1.23456e-7, 2.5, math.inf, math.nan)] == \
        ["–", "0", "0", "1.23e-07", "2.5", "inf", "nan"]


def test_the_pages_write_points_without_trailing_zeros():
    assert [page_points(x) for x in (26.0, 0.5, 33.25)] == ["26", "0.5", "33.25"]


def test_the_exports_round_to_six_decimals_and_leave_none_empty():
    assert [export_number(x) for x in (None, 34.0, 0.5, 1 / 3, 1e-7, 1234567.0)] == \
        ["", "34", "0.5", "0.333333", "0", "1.23457e+06"]


def test_every_exercise_has_a_title_and_a_short_name():
    assert set(EXERCISE_TITLES) == set(EXERCISE_NAMES) == set(EXERCISES)
