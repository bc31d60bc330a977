"""styles.csv: A1111's file format, applying and extracting styles."""

import pytest

from paragoger.prompts import PromptStyle, StyleStore
from paragoger.prompts.styles import merge, remove_style_text

A1111_FILE = (
    "\ufeffname,prompt,negative_prompt\r\n"
    "Quality,\"masterpiece, best quality\",\"lowres, bad anatomy\"\r\n"
    "Frame,\"photo of {prompt}, 35mm\",blurry\r\n"
    "\"# hidden\",x,y\r\n"
    "Neg only,,watermark\r\n"
)


def raw_text(path, encoding="utf-8"):
    """The file's text with its line endings as written."""
    return path.read_bytes().decode(encoding)


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text(A1111_FILE, encoding="utf-8", newline="")
    return StyleStore(path)


def test_loads_a1111_file(store):
    assert store.names() == ["Quality", "Frame", "Neg only"]
    assert store.get("Quality") == PromptStyle("Quality", "masterpiece, best quality", "lowres, bad anatomy")
    assert store.get("Neg only") == PromptStyle("Neg only", "", "watermark")


def test_comment_rows_are_skipped(store):
    assert "# hidden" not in store


def test_missing_file_means_no_styles(tmp_path):
    assert len(StyleStore(tmp_path / "none.csv")) == 0


def test_spaces_after_commas_and_old_text_column(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text('name, text\nOld, "cinematic"\n', encoding="utf-8")
    assert StyleStore(path).get("Old") == PromptStyle("Old", "cinematic", "")


def test_file_without_header(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text("Quality,masterpiece,lowres\nShort,only prompt\n", encoding="utf-8")
    store = StyleStore(path)
    assert store.get("Quality") == PromptStyle("Quality", "masterpiece", "lowres")
    assert store.get("Short") == PromptStyle("Short", "only prompt", "")


def test_last_row_with_a_name_wins(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text("name,prompt,negative_prompt\nA,one,\nB,two,\nA,three,\n", encoding="utf-8")
    store = StyleStore(path)
    assert store.names() == ["A", "B"]
    assert store.get("A").prompt == "three"


def test_multiline_quoted_prompt(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text('name,prompt,negative_prompt\nML,"line one\nline two",\n', encoding="utf-8")
    assert StyleStore(path).get("ML").prompt == "line one\nline two"


def test_style_appended_after_comma(store):
    assert store.apply("1girl", ["Quality"]) == "1girl, masterpiece, best quality"
    assert store.apply_negative("text", ["Quality"]) == "text, lowres, bad anatomy"


def test_style_applied_to_empty_prompt_has_no_comma(store):
    assert store.apply("", ["Quality"]) == "masterpiece, best quality"
    assert store.apply("  ", ["Quality"]) == "masterpiece, best quality"


def test_style_placeholder_replaced(store):
    assert store.apply("a cat", ["Frame"]) == "photo of a cat, 35mm"


def test_placeholder_keeps_the_prompt_unstripped():
    assert merge("[{prompt}]", " a ") == "[ a ]"
    assert merge("{prompt} and {prompt}", "x") == "x and x"


def test_styles_apply_in_order(store):
    assert store.apply("a cat", ["Frame", "Quality"]) == "photo of a cat, 35mm, masterpiece, best quality"
    assert store.apply("a cat", ["Quality", "Frame"]) == "photo of a cat, masterpiece, best quality, 35mm"


def test_unknown_style_adds_nothing_but_strips(store):
    assert store.apply("  a cat ", ["Nope"]) == "a cat"


def test_empty_style_text_strips_the_prompt(store):
    assert store.apply(" a cat ", ["Neg only"]) == "a cat"


def test_extract_styles(store):
    prompt = store.apply("a cat", ["Frame", "Quality"])
    negative = store.apply_negative("ugly", ["Frame", "Quality"])
    assert store.extract_styles(prompt, negative) == (["Frame", "Quality"], "a cat", "ugly")


def test_extract_requires_both_prompts_to_match(store):
    assert store.extract_styles("a cat, masterpiece, best quality", "ugly") == ([], "a cat, masterpiece, best quality", "ugly")


def test_extract_with_empty_negative_text_matches_any_negative(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text("name,prompt,negative_prompt\nHQ,high quality,\n", encoding="utf-8")
    store = StyleStore(path)
    # The negative is only stripped; "bad," keeps its comma (no ", " is left at its end).
    assert store.extract_styles("dog, high quality", " bad, ") == (["HQ"], "dog", "bad,")


def test_remove_style_text_a1111_docstring_examples():
    assert remove_style_text("masterpiece", "1girl, art by greg, masterpiece") == (True, "1girl, art by greg")
    assert remove_style_text("masterpiece, {prompt}", "masterpiece, 1girl, art by greg") == (True, "1girl, art by greg")
    assert remove_style_text("masterpiece, {prompt}", "exquisite, 1girl, art by greg") == (
        False,
        "exquisite, 1girl, art by greg",
    )


def test_style_with_two_placeholders_never_matches():
    assert remove_style_text("{prompt}, {prompt}", "a, a") == (False, "a, a")


def test_save_style_keeps_other_rows(store, tmp_path):
    store.save_style(PromptStyle("New", 'say "hi", {prompt}', "bad"))
    store.save_style(PromptStyle("Quality", "best", ""))
    again = StyleStore(store.path)
    assert again.names() == ["Quality", "Frame", "Neg only", "New"]
    assert again.get("New") == PromptStyle("New", 'say "hi", {prompt}', "bad")
    assert again.get("Quality") == PromptStyle("Quality", "best", "")
    text = raw_text(store.path)
    assert text.startswith("\ufeffname,prompt,negative_prompt\r\n")
    assert "# hidden" in text  # the comment row survives
    assert raw_text(tmp_path / "styles.csv.bak") != text
    assert [path.name for path in tmp_path.iterdir() if path.suffix == ".tmp"] == []


def test_save_style_creates_the_file(tmp_path):
    store = StyleStore(tmp_path / "sub" / "styles.csv")
    store.save_style(PromptStyle("A", "x", "y"))
    assert raw_text(tmp_path / "sub" / "styles.csv", "utf-8-sig") == "name,prompt,negative_prompt\r\nA,x,y\r\n"
    assert store.get("A") == PromptStyle("A", "x", "y")


def test_save_keeps_rows_written_by_someone_else(store):
    with open(store.path, "a", encoding="utf-8", newline="") as file:
        file.write("Later,added elsewhere,\r\n")
    store.save_style(PromptStyle("Mine", "m", ""))
    assert StyleStore(store.path).names() == ["Quality", "Frame", "Neg only", "Later", "Mine"]


def test_save_to_a_headerless_file_adds_the_header(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text("A,x,y\n", encoding="utf-8")
    StyleStore(path).save_style(PromptStyle("B", "p", "n"))
    assert raw_text(path, "utf-8-sig") == "name,prompt,negative_prompt\r\nA,x,y\r\nB,p,n\r\n"


def test_save_to_old_two_column_file(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text("name,text\nOld,cinematic\n", encoding="utf-8")
    store = StyleStore(path)
    store.save_style(PromptStyle("New", "p", "n"))
    again = StyleStore(path)
    assert again.get("Old") == PromptStyle("Old", "cinematic", "")
    assert again.get("New") == PromptStyle("New", "p", "n")


def test_delete_style(store):
    store.delete_style("Frame")
    assert StyleStore(store.path).names() == ["Quality", "Neg only"]
    assert store.names() == ["Quality", "Neg only"]


def test_two_stores_do_not_share_state(tmp_path):
    first = StyleStore(tmp_path / "a.csv")
    second = StyleStore(tmp_path / "b.csv")
    first.save_style(PromptStyle("Only in a", "x", ""))
    assert "Only in a" not in second


def test_unreadable_file_gives_no_styles_and_is_not_overwritten(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_bytes(b"name,prompt\n\xff\xfe broken,x\n")
    store = StyleStore(path)
    assert len(store) == 0 and "styles.csv" in store.load_error
    with pytest.raises(UnicodeDecodeError):
        store.save_style(PromptStyle("A", "x", ""))
    assert path.read_bytes() == b"name,prompt\n\xff\xfe broken,x\n"


def test_replacing_a_row_keeps_extra_columns(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text("name,prompt,negative_prompt,notes\nA,x,y,keep me\n", encoding="utf-8")
    StyleStore(path).save_style(PromptStyle("A", "new", ""))
    assert raw_text(path, "utf-8-sig") == "name,prompt,negative_prompt,notes\r\nA,new,,keep me\r\n"
