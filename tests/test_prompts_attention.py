"""Emphasis parsing: the exact runs A1111's parse_prompt_attention gives."""

import random

import pytest

from paragoger.prompts import parse_attention, split_on_break


# The six examples A1111 documents, floats compared exactly.
@pytest.mark.parametrize(
    "prompt, runs",
    [
        ("normal text", [["normal text", 1.0]]),
        ("an (important) word", [["an ", 1.0], ["important", 1.1], [" word", 1.0]]),
        ("(unbalanced", [["unbalanced", 1.1]]),
        ("\\(literal\\]", [["(literal]", 1.0]]),
        ("(unnecessary)(parens)", [["unnecessaryparens", 1.1]]),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ["a ", 1.0],
                ["house", 1.5730000000000004],
                [" ", 1.1],
                ["on", 1.0],
                [" a ", 1.1],
                ["hill", 0.55],
                [", sun, ", 1.1],
                ["sky", 1.4641000000000006],
                [".", 1.1],
            ],
        ),
    ],
)
def test_documented_examples(prompt, runs):
    assert parse_attention(prompt) == runs


def test_empty_prompt_is_one_empty_run():
    assert parse_attention("") == [["", 1.0]]


def test_nested_parentheses_multiply():
    assert parse_attention("((a:1.5))") == [["a", 1.5 * 1.1]]
    assert parse_attention("((a:1.5))")[0][1] == pytest.approx(1.65)
    assert parse_attention("((a))") == [["a", 1.1 * 1.1]]


def test_square_brackets_multiply_by_the_reciprocal():
    # 1 / 1.1 multiplied, not a division by 1.1: the bits differ and merging compares exactly.
    assert parse_attention("[a]") == [["a", 0.9090909090909091]]
    assert parse_attention("[[a]]") == [["a", (1 / 1.1) * (1 / 1.1)]]


def test_explicit_weight_with_spaces_and_signs():
    assert parse_attention("(a: 1.5 )") == [["a", 1.5]]
    assert parse_attention("(a:-1)") == [["a", -1.0]]
    assert parse_attention("(a:.5)") == [["a", 0.5]]


def test_escaped_brackets_are_literal():
    assert parse_attention("\\(a\\) \\[b\\]") == [["(a) [b]", 1.0]]
    assert parse_attention("(\\(x\\))") == [["(x)", 1.1]]


def test_escaped_backslash_is_one_backslash():
    assert parse_attention("a\\\\b") == [["a\\b", 1.0]]


def test_lone_backslash_is_dropped():
    # A1111 drops a backslash that escapes nothing it knows.
    assert parse_attention("a\\b") == [["ab", 1.0]]


def test_unmatched_closers_are_plain_text():
    assert parse_attention("a) b]") == [["a) b]", 1.0]]
    assert parse_attention("a:1.5)") == [["a:1.5)", 1.0]]


def test_open_brackets_apply_to_the_rest():
    assert parse_attention("a (b [c") == [["a ", 1.0], ["b ", 1.1], ["c", 1.0]]


def test_crossed_brackets_close_their_own_kind():
    assert parse_attention("(a[b)c]") == [["a", 1.1], ["b", 1.0], ["c", 0.9090909090909091]]


def test_colon_without_weight_is_text():
    assert parse_attention("(a:b)") == [["a:b", 1.1]]
    assert parse_attention("time: 12:30") == [["time: 12:30", 1.0]]


def test_equal_weight_neighbours_merge():
    assert parse_attention("(a)(b)[c][d]") == [["ab", 1.1], ["cd", 0.9090909090909091]]


def test_break_is_its_own_run():
    assert parse_attention("a BREAK b") == [["a", 1.0], ["BREAK", -1], ["b", 1.0]]


def test_only_break():
    assert parse_attention("BREAK") == [["", 1.0], ["BREAK", -1], ["", 1.0]]


def test_break_must_be_a_whole_upper_case_word():
    assert parse_attention("BREAKING break") == [["BREAKING break", 1.0]]


def test_break_next_to_brackets_keeps_empty_runs():
    assert parse_attention("(a) BREAK (b)") == [
        ["a", 1.1],
        ["", 1.0],
        ["BREAK", -1],
        ["", 1.0],
        ["b", 1.1],
    ]


def test_break_inside_emphasis_is_scaled_and_not_a_break():
    runs = parse_attention("(a BREAK b)")
    assert runs == [["a", 1.1], ["BREAK", -1.1], ["b", 1.1]]
    assert split_on_break(runs) == [runs]


def test_split_on_break_groups_runs():
    runs = parse_attention("a BREAK (b) BREAK c")
    assert split_on_break(runs) == [
        [["a", 1.0]],
        [["", 1.0], ["b", 1.1], ["", 1.0]],
        [["c", 1.0]],
    ]


def test_chinese_text_is_plain_text():
    assert parse_attention("一只猫，(红色:1.2)") == [["一只猫，", 1.0], ["红色", 1.2]]


def test_newlines_are_text():
    assert parse_attention("a\n(b)") == [["a\n", 1.0], ["b", 1.1]]


def test_malformed_weight_is_text_instead_of_an_error():
    # A1111 raises on float("1.2.3"); here it stays text and the ")" closes normally.
    assert parse_attention("(a:1.2.3)") == [["a:1.2.3", 1.1]]
    assert parse_attention("(a:.)") == [["a:.", 1.1]]


def test_garbage_is_plain_text_never_an_exception():
    rng = random.Random(1234)
    alphabet = "ab ()[]:\\.1-+|\nBREAK"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        runs = parse_attention(text)
        assert runs
        assert all(isinstance(run[0], str) for run in runs)
