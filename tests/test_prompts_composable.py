"""Composable diffusion: splitting at AND as A1111's get_multicond_prompt_list does."""

from paragoger.prompts import split_and
from paragoger.prompts.composable import unique_subprompts


def test_no_and_is_one_part():
    assert split_and("a cat") == [("a cat", 1.0)]


def test_and_with_weight():
    assert split_and("a AND b:0.5") == [("a", 1.0), (" b", 0.5)]


def test_weights_with_spaces_and_signs():
    assert split_and("a : 1.5 AND b:-0.5 AND c: .25") == [("a", 1.5), (" b", -0.5), (" c", 0.25)]
    assert split_and("a:2. AND b:+3") == [("a", 2.0), (" b", 3.0)]


def test_trailing_spaces_dropped_leading_kept():
    assert split_and("  a   AND   b  ") == [("  a", 1.0), ("   b", 1.0)]


def test_and_must_be_a_whole_upper_case_word():
    assert split_and("sand AND_x and ANDROID") == [("sand AND_x and ANDROID", 1.0)]
    assert split_and("a,AND,b") == [("a,", 1.0), (",b", 1.0)]


def test_weight_without_and_still_counts():
    assert split_and("masterpiece:1.2") == [("masterpiece", 1.2)]


def test_emphasis_weight_is_not_a_composable_weight():
    assert split_and("(cat:1.2) AND dog") == [("(cat:1.2)", 1.0), (" dog", 1.0)]


def test_colon_without_number_is_text():
    assert split_and("time: noon AND b:x") == [("time: noon", 1.0), (" b:x", 1.0)]


def test_and_inside_brackets_still_splits():
    assert split_and("[a AND b:3]") == [("[a", 1.0), (" b:3]", 1.0)]


def test_empty_parts():
    assert split_and("AND") == [("", 1.0), ("", 1.0)]
    assert split_and("") == [("", 1.0)]


def test_multiline_part():
    assert split_and("a\nb:0.5\n AND c") == [("a\nb", 0.5), (" c", 1.0)]


def test_unique_subprompts_shares_texts():
    texts, per_prompt = unique_subprompts(["a AND b:0.5", "b AND a:2"])
    assert texts == ["a", " b", "b", " a"]
    assert per_prompt == [[(0, 1.0), (1, 0.5)], [(2, 1.0), (3, 2.0)]]
    texts, per_prompt = unique_subprompts(["x AND y", "x AND y"])
    assert texts == ["x", " y"]
    assert per_prompt == [[(0, 1.0), (1, 1.0)], [(0, 1.0), (1, 1.0)]]
