"""Prompt editing schedules: the exact schedules A1111 1.10.1 computes.

Expected values are A1111's doctests for get_learned_conditioning_prompt_schedules
and outputs observed from its grammar (facts, not code).
"""

import random

import pytest

from paragoger.prompts import prompt_schedule, schedules_for


def cycle(*texts, steps=10):
    return [[step, texts[(step - 1) % len(texts)]] for step in range(1, steps + 1)]


# A1111's doctests, 10 steps.
@pytest.mark.parametrize(
    "prompt, schedule",
    [
        ("test", [[10, "test"]]),
        ("a [b:3]", [[3, "a "], [10, "a b"]]),
        ("a [b: 3]", [[3, "a "], [10, "a b"]]),
        ("a [[[b]]:2]", [[2, "a "], [10, "a [[b]]"]]),
        ("[(a:2):3]", [[3, ""], [10, "(a:2)"]]),
        ("a [b : c : 1] d", [[1, "a b  d"], [10, "a  c  d"]]),
        ("a[b:[c:d:2]:1]e", [[1, "abe"], [2, "ace"], [10, "ade"]]),
        ("a [unbalanced", [[10, "a [unbalanced"]]),
        ("a [b:.5] c", [[5, "a  c"], [10, "a b c"]]),
        ("((a][:b:c [d:3]", [[3, "((a][:b:c "], [10, "((a][:b:c d"]]),
        ("[a|(b:1.1)]", cycle("a", "(b:1.1)")),
        ("[fe|]male", cycle("female", "male")),
        ("[fe|||]male", cycle("female", "male", "male", "male")),
    ],
)
def test_a1111_doctests(prompt, schedule):
    assert prompt_schedule(prompt, 10) == schedule


def test_documented_examples():
    assert prompt_schedule("a [b:3]", 10) == [[3, "a "], [10, "a b"]]
    assert prompt_schedule("a[b:[c:d:2]:1]e", 10) == [[1, "abe"], [2, "ace"], [10, "ade"]]


def test_stale_a1111_doctest_is_plain_text():
    # A1111's doctest says [[5, 'a  c'], [10, 'a {b|d{ c']] ("not handling this right now"),
    # but its grammar rejects the bare "|", so the real output is the prompt unchanged.
    assert prompt_schedule("a [{b|d{:.5] c", 10) == [[10, "a [{b|d{:.5] c"]]


def test_from_to_when():
    assert prompt_schedule("a [cat:dog:4] b", 10) == [[4, "a cat b"], [10, "a dog b"]]


def test_removed_at_when():
    assert prompt_schedule("a [cat::4]", 10) == [[4, "a cat"], [10, "a "]]


def test_fraction_of_steps():
    assert prompt_schedule("[a:b:0.5]", 20) == [[10, "a"], [20, "b"]]
    assert prompt_schedule("[a:b:.25]", 20) == [[5, "a"], [20, "b"]]
    # int() truncates: 0.55 * 10 = 5.5 -> 5
    assert prompt_schedule("[a:b:0.55]", 10) == [[5, "a"], [10, "b"]]


def test_number_with_a_point_is_a_fraction_in_new_timelines():
    # A1111 1.10.1 default: "1.0" has a point, so it is 100% of the steps.
    assert prompt_schedule("[a:b:1.0]", 10) == [[10, "a"]]
    assert prompt_schedule("[a:b:2.5]", 10) == [[10, "a"]]
    assert prompt_schedule("[a:1.]", 10) == [[10, ""]]


def test_old_timelines_fraction_only_below_one():
    assert prompt_schedule("[a:b:1.0]", 10, old_timelines=True) == [[1, "a"], [10, "b"]]
    assert prompt_schedule("[a:b:2.5]", 10, old_timelines=True) == [[2, "a"], [10, "b"]]
    assert prompt_schedule("[a:b:0.5]", 10, old_timelines=True) == [[5, "a"], [10, "b"]]


def test_step_past_the_end_never_switches():
    assert prompt_schedule("[a:b:30]", 10) == [[10, "a"]]


def test_zero_and_negative_when_switch_at_once():
    assert prompt_schedule("[a:b:0]", 10) == [[10, "b"]]
    assert prompt_schedule("[a:-1]", 10) == [[10, "a"]]


def test_exponent_numbers():
    assert prompt_schedule("[a:b:1e1]", 10) == [[10, "a"]]
    assert prompt_schedule("[a:b:2e0]", 10) == [[2, "a"], [10, "b"]]


def test_infinite_when_does_not_crash():
    # A1111 raises OverflowError here.
    assert prompt_schedule("[a:b:1e999]", 10) == [[10, "a"]]
    assert prompt_schedule("[a:b:-1e999]", 10) == [[10, "b"]]


def test_schedule_nested_edit():
    assert prompt_schedule("[[a:b:2]:c:5]", 10) == [[2, "a"], [5, "b"], [10, "c"]]
    assert prompt_schedule("[a:[b:c:6]:3]", 10) == [[3, "a"], [6, "b"], [10, "c"]]


def test_nested_edit_in_the_hidden_branch_still_adds_its_step():
    # [b:7] only shows after step 3 but its step is still a boundary.
    assert prompt_schedule("[a:[b:7]:3]", 10) == [[3, "a"], [7, ""], [10, "b"]]


def test_edit_inside_emphasis_keeps_the_emphasis():
    assert prompt_schedule("(a:[b:3])", 10) == [[3, "(a:)"], [10, "(a:b)"]]
    assert prompt_schedule("([cat:dog:3]:1.2)", 10) == [[3, "(cat:1.2)"], [10, "(dog:1.2)"]]


def test_alternation_switches_every_step():
    assert prompt_schedule("[cat|dog] photo", 4) == [
        [1, "cat photo"],
        [2, "dog photo"],
        [3, "cat photo"],
        [4, "dog photo"],
    ]


def test_alternation_with_three_options():
    assert prompt_schedule("[a|b|c]", 5) == cycle("a", "b", "c", steps=5)


def test_alternation_with_an_edit_inside():
    assert prompt_schedule("[a|[b:c:2]]", 4) == [[1, "a"], [2, "b"], [3, "a"], [4, "c"]]


def test_alternation_and_edit_side_by_side():
    assert prompt_schedule("[a:3][b|c]", 4) == [[1, "b"], [2, "c"], [3, "b"], [4, "ac"]]


def test_empty_alternatives():
    assert prompt_schedule("[|]", 2) == [[1, ""], [2, ""]]


def test_emphasis_only_is_untouched():
    assert prompt_schedule("(a:1.2) [b] (c)", 10) == [[10, "(a:1.2) [b] (c)"]]
    assert prompt_schedule("[]", 10) == [[10, "[]"]]


def test_escaped_brackets_are_not_edits():
    assert prompt_schedule("\\[a:3\\]", 10) == [[10, "\\[a:3\\]"]]
    assert prompt_schedule("[a\\]:3]", 10) == [[3, ""], [10, "a\\]"]]


def test_stray_brackets_around_an_edit_are_text():
    assert prompt_schedule("[[a:2]", 10) == [[2, "["], [10, "[a"]]
    assert prompt_schedule("x)[a:3]", 10) == [[3, "x)"], [10, "x)a"]]
    assert prompt_schedule("(a:b:c)[d:3]", 10) == [[3, "(a:b:c)"], [10, "(a:b:c)d"]]


def test_pipe_outside_brackets_makes_the_prompt_plain():
    assert prompt_schedule("a|b [c:3]", 10) == [[10, "a|b [c:3]"]]
    assert prompt_schedule("(a|b) [c:3]", 10) == [[10, "(a|b) [c:3]"]]
    assert prompt_schedule("[a|b", 10) == [[10, "[a|b"]]


def test_escaped_pipe_is_fine():
    assert prompt_schedule("\\|[a:3]", 10) == [[3, "\\|"], [10, "\\|a"]]


def test_dangling_backslash_makes_the_prompt_plain():
    assert prompt_schedule("[a:3]\\", 10) == [[10, "[a:3]\\"]]
    assert prompt_schedule("x\\\n[a:3]", 10) == [[10, "x\\\n[a:3]"]]


def test_too_many_colons_is_text():
    assert prompt_schedule("[a:b:c:3]", 10) == [[10, "[a:b:c:3]"]]
    assert prompt_schedule("[a:1.5e]", 10) == [[10, "[a:1.5e]"]]


def test_empty_parts():
    assert prompt_schedule("[:3]", 10) == [[3, ""], [10, ""]]
    assert prompt_schedule("[:b:3]", 10) == [[3, ""], [10, "b"]]
    assert prompt_schedule("[a::3]", 10) == [[3, "a"], [10, ""]]


def test_spaces_around_the_number_are_dropped():
    assert prompt_schedule("[a: 3 ]", 10) == [[3, ""], [10, "a"]]
    assert prompt_schedule("[a:+.5]", 10) == [[5, ""], [10, "a"]]


def test_multiline_prompt():
    assert prompt_schedule("a\n[b:\nc:2]", 4) == [[2, "a\nb"], [4, "a\n\nc"]]


def test_chinese_text_is_plain_text():
    assert prompt_schedule("一只[猫:狗:3]", 5) == [[3, "一只猫"], [5, "一只狗"]]


def test_hires_whole_numbers_count_on_from_the_first_pass():
    assert prompt_schedule("[a:b:25]", 20, hires_steps=10) == [[5, "a"], [10, "b"]]
    assert prompt_schedule("[a:b:15]", 20, hires_steps=10) == [[10, "b"]]


def test_hires_fractions_run_from_one_to_two():
    # A1111 doctests with 10 + 10 steps.
    assert prompt_schedule("a [b:.5] c", 10, hires_steps=10) == [[10, "a b c"]]
    assert prompt_schedule("a [b:1.5] c", 10, hires_steps=10) == [[5, "a  c"], [10, "a b c"]]


def test_hires_with_old_timelines_uses_the_first_pass_steps():
    # A1111 ignores hires_steps when old timelines are on.
    assert prompt_schedule("[a:b:0.5]", 10, hires_steps=4, old_timelines=True) == [[5, "a"], [10, "b"]]


def test_same_function_with_another_step_count():
    assert prompt_schedule("[a:b:0.5]", 30) == [[15, "a"], [30, "b"]]


def test_schedules_for_computes_each_distinct_prompt_once():
    result = schedules_for(["a [b:3]", "c", "a [b:3]"], 10)
    assert result == {"a [b:3]": [[3, "a "], [10, "a b"]], "c": [[10, "c"]]}
    assert list(result) == ["a [b:3]", "c"]


def test_deep_nesting_does_not_crash():
    # A1111 manages about 150 levels, then hits Python's recursion limit; here depth is free.
    deep = "[" * 500 + "a:3" + "]" * 500
    assert prompt_schedule(deep, 10) == [[3, "[" * 499 + "]" * 499], [10, "[" * 499 + "a" + "]" * 499]]


def test_long_prompt_is_fast():
    prompt = ", ".join(f"[word{i}:other{i}:{i % 9 + 1}]" for i in range(300)) + "(" * 2000
    schedule = prompt_schedule(prompt, 10)
    assert [end for end, _ in schedule] == list(range(1, 11))


def test_garbage_is_plain_text_never_an_exception():
    rng = random.Random(20240601)
    alphabet = "ab [](): |:\\.15e-+\n"
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        steps, hires = rng.choice([1, 10, 20]), rng.choice([None, 5])
        schedule = prompt_schedule(text, steps, hires_steps=hires)
        ends = [end for end, _ in schedule]
        assert ends == sorted(set(ends)) and ends[-1] == (hires or steps)
        assert all(isinstance(part, str) for _, part in schedule)


def test_edit_syntax_tree():
    from paragoger.prompts.edit_syntax import Cycle, Edit, Unparseable, parse_edits

    assert parse_edits("a [b:c:3] [d|e] (f)") == (
        "a ",
        Edit(("b",), ("c",), "3"),
        " ",
        Cycle((("d",), ("e",))),
        " ",
        "(",
        "f",
        ")",
    )
    with pytest.raises(Unparseable):
        parse_edits("a|b")
