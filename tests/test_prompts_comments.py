"""Prompt comments as A1111's "Enable comments" strips them."""

from paragoger.prompts import strip_comments


def test_comment_at_end_of_line():
    assert strip_comments("a, b # note\nc") == "a, b \nc"


def test_whole_line_comment_is_removed_with_its_line_break():
    assert strip_comments("a\n# note\nb") == "a\nb"


def test_first_line_comment():
    assert strip_comments("# note\nb") == "\nb"


def test_comment_on_the_last_line_leaves_a_line_break():
    assert strip_comments("a # note") == "a \n"


def test_prompt_that_is_only_a_comment():
    assert strip_comments("# just a note") == "\n"


def test_consecutive_comment_lines():
    assert strip_comments("# a\n# b\nc") == "\n\nc"
    assert strip_comments("x\n# a\n# b\nc") == "x\n\nc"


def test_every_hash_starts_a_comment():
    assert strip_comments("color #ff0000, red") == "color \n"
    assert strip_comments("\\# not escaped") == "\\\n"


def test_no_comment_unchanged():
    assert strip_comments("a, (b:1.2)\nc") == "a, (b:1.2)\nc"
    assert strip_comments("") == ""
