"""Infotext must read and write exactly like A1111: users paste these texts between apps."""
from paragoger.imaging.infotext import (
    INFOTEXT_FIELD_ORDER,
    format_infotext,
    ordered_params,
    parse_infotext,
    split_parsed,
    split_sampler_and_schedule,
)

A1111_193_EXAMPLE = (
    "1girl, masterpiece, white blouse, [midriff::12], <lora:fubuki:1>\n"
    "Negative prompt: bad fingers\n"
    "Steps: 20, Sampler: DPM++ 2M SDE, Schedule type: Karras, CFG scale: 7, Seed: 2245042501, Size: 512x768, "
    "Model hash: d4c1719023, Model: animekawa_v10, VAE hash: 735e4c3a44, VAE: vaeFtMse840000EmaPruned_vae.safetensors, "
    "Denoising strength: 0.6, Hires upscale: 2, Hires steps: 10, Hires upscaler: R-ESRGAN 4x+ Anime6B, "
    'Lora hashes: "fubuki: ce30cae7c555, space_hopper: f4112c058273", Version: v1.9.3'
)


# --- writing -------------------------------------------------------------------------------------------------------

def test_layout_is_prompt_negative_prompt_then_parameters_line():
    text = format_infotext("a cat", "blurry", {"Steps": 20, "Sampler": "Euler a", "Seed": 1})
    assert text == "a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, Seed: 1"


def test_empty_negative_prompt_leaves_its_line_out():
    assert format_infotext("a cat", "", {"Steps": 20}) == "a cat\nSteps: 20"


def test_multiline_prompts_are_written_unquoted():
    text = format_infotext("line one,\nline: two", "neg, one\nneg two", {"Steps": 20})
    assert text == "line one,\nline: two\nNegative prompt: neg, one\nneg two\nSteps: 20"


def test_value_with_comma_is_json_quoted():
    assert format_infotext("p", "", {"Lora hashes": "a: 1, b: 2"}) == 'p\nLora hashes: "a: 1, b: 2"'


def test_value_with_colon_or_newline_is_json_quoted_with_escapes():
    text = format_infotext("p", "", {"A": "x:y", "B": 'say "hi"\nnow', "C": "日本"})
    assert text == 'p\nA: "x:y", B: "say \\"hi\\"\\nnow", C: 日本'


def test_plain_values_are_not_quoted():
    assert format_infotext("p", "", {"Model": "my model (v2)", "CFG scale": 7.5}) == "p\nModel: my model (v2), CFG scale: 7.5"


def test_value_equal_to_its_key_is_written_bare():
    assert format_infotext("p", "", {"Steps": 20, "ADetailer": "ADetailer"}) == "p\nSteps: 20, ADetailer"


def test_none_values_are_left_out():
    assert format_infotext("p", "", {"Steps": 20, "VAE": None, "Seed": 5}) == "p\nSteps: 20, Seed: 5"


def test_whole_text_is_stripped():
    assert format_infotext("  p  ", "", {}) == "p"


def test_ordered_params_follow_a1111_order_with_extras_then_version_and_user():
    params = {
        "Version": "v1.10.1", "User": "me", "Hires upscale": 2, "Seed": 1, "Lora hashes": "x: 1",
        "Denoising strength": 0.7, "Steps": 20, "Size": "512x512", "Sampler": "Euler", "RNG": "CPU",
        "Schedule type": "Karras", "CFG scale": 7, "Clip skip": 2, "Model": "m", "Model hash": "abc",
    }
    assert list(ordered_params(params)) == [
        "Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model hash", "Model",
        "Denoising strength", "Clip skip", "RNG", "Hires upscale", "Lora hashes", "Version", "User",
    ]


def test_field_order_constant_lists_the_reference_fields_in_order():
    reference = ["Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed", "Face restoration",
                 "Size", "Model hash", "Model", "VAE hash", "VAE", "Variation seed", "Variation seed strength",
                 "Seed resize from", "Denoising strength", "Conditional mask weight", "Clip skip", "ENSD",
                 "Token merging ratio", "Init image hash", "RNG", "Tiling"]
    assert [key for key in INFOTEXT_FIELD_ORDER if key in reference] == reference


# --- reading -------------------------------------------------------------------------------------------------------

def test_a1111_193_example_parses_to_a1111_fields():
    parsed = parse_infotext(A1111_193_EXAMPLE)
    assert parsed["Prompt"] == "1girl, masterpiece, white blouse, [midriff::12], <lora:fubuki:1>"
    assert parsed["Negative prompt"] == "bad fingers"
    assert parsed["Sampler"] == "DPM++ 2M SDE"
    assert parsed["Schedule type"] == "Karras"
    assert parsed["Seed"] == "2245042501"
    assert (parsed["Size-1"], parsed["Size-2"]) == ("512", "768")
    assert parsed["Lora hashes"] == "fubuki: ce30cae7c555, space_hopper: f4112c058273"
    assert parsed["Hires upscaler"] == "R-ESRGAN 4x+ Anime6B"
    assert parsed["Version"] == "v1.9.3"
    assert "Size" not in parsed


def test_a1111_193_example_round_trips():
    assert format_infotext(*split_parsed(parse_infotext(A1111_193_EXAMPLE, raw=True))) == A1111_193_EXAMPLE
    with_defaults = parse_infotext(A1111_193_EXAMPLE)
    assert format_infotext(*split_parsed(with_defaults, drop_defaults=True)) == A1111_193_EXAMPLE


def test_written_infotext_reads_back_to_the_same_values():
    params = ordered_params({"Steps": 30, "Sampler": "Euler a", "Seed": 42, "Size": "640x448",
                             "Seed resize from": "512x512", "Note": 'a "quoted", odd: value\nwith newline'})
    text = format_infotext("a, b\nc", "x\ny", params)
    parsed = parse_infotext(text, raw=True)
    assert parsed["Prompt"] == "a, b\nc"
    assert parsed["Negative prompt"] == "x\ny"
    assert parsed["Note"] == 'a "quoted", odd: value\nwith newline'
    assert (parsed["Seed resize from-1"], parsed["Seed resize from-2"]) == ("512", "512")
    assert format_infotext(*split_parsed(parsed)) == text


def test_all_values_are_strings():
    parsed = parse_infotext("p\nSteps: 20, CFG scale: 7.5, Seed: 3")
    assert all(isinstance(value, str) for value in parsed.values())


def test_last_line_with_fewer_than_three_pairs_belongs_to_the_prompt():
    parsed = parse_infotext("a portrait\nstyle: oil, mood: calm")
    assert parsed["Prompt"] == "a portrait\nstyle: oil, mood: calm"
    assert "style" not in parsed


def test_prompt_only_text_has_no_parameters():
    parsed = parse_infotext("just a prompt", raw=True)
    assert parsed == {"Prompt": "just a prompt", "Negative prompt": ""}


def test_every_line_after_negative_prompt_belongs_to_it():
    text = "p1\np2\nNegative prompt: n1\nn2\nNegative prompt: n3\nSteps: 1, Seed: 2, CFG scale: 3"
    parsed = parse_infotext(text)
    assert parsed["Prompt"] == "p1\np2"
    assert parsed["Negative prompt"] == "n1\nn2\nNegative prompt: n3"


def test_empty_negative_prompt_line_does_not_add_a_leading_newline():
    parsed = parse_infotext("p\nNegative prompt:\nbad hands\nSteps: 1, Seed: 2, CFG scale: 3")
    assert parsed["Negative prompt"] == "bad hands"


def test_missing_keys_get_a1111_defaults():
    parsed = parse_infotext("p\nSteps: 20, Sampler: Euler, Seed: 1")
    assert parsed["Clip skip"] == "1"
    assert parsed["RNG"] == "GPU"
    assert parsed["Schedule type"] == "Automatic"
    assert parsed["Masked content"] == "original"
    assert parsed["Inpaint area"] == "Whole picture"
    assert parsed["Masked area padding"] == "32"


def test_present_keys_are_not_overwritten_by_defaults():
    parsed = parse_infotext("p\nSteps: 20, Clip skip: 2, RNG: CPU")
    assert (parsed["Clip skip"], parsed["RNG"]) == ("2", "CPU")


def test_old_combined_sampler_name_is_split_into_sampler_and_schedule():
    parsed = parse_infotext("p\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1")
    assert (parsed["Sampler"], parsed["Schedule type"]) == ("DPM++ 2M", "Karras")
    assert list(parsed)[:5] == ["Prompt", "Negative prompt", "Steps", "Sampler", "Schedule type"]


def test_sampler_split_handles_multi_word_schedules_and_leaves_real_names_alone():
    assert split_sampler_and_schedule("DPM++ 2M SDE Exponential") == ("DPM++ 2M SDE", "Exponential")
    assert split_sampler_and_schedule("DPM++ 2M SGM Uniform") == ("DPM++ 2M", "SGM Uniform")
    assert split_sampler_and_schedule("Euler a Align Your Steps") == ("Euler a", "Align Your Steps")
    assert split_sampler_and_schedule("dpm++ sde karras") == ("DPM++ SDE", "Karras")
    assert split_sampler_and_schedule("DDIM") == ("DDIM", None)
    assert split_sampler_and_schedule("DPM++ 2M SDE Heun") == ("DPM++ 2M SDE Heun", None)
    assert split_sampler_and_schedule("Some Extension Sampler Karras") == ("Some Extension Sampler Karras", None)


def test_raw_parse_keeps_the_text_as_written():
    parsed = parse_infotext("p\nSteps: 20, Sampler: DPM++ 2M Karras, Seed: 1", raw=True)
    assert parsed["Sampler"] == "DPM++ 2M Karras"
    assert "Schedule type" not in parsed and "Clip skip" not in parsed


def test_broken_json_quote_is_kept_verbatim():
    parsed = parse_infotext('p\nSteps: 20, Seed: 1, Weird: "\\x"')
    assert parsed["Weird"] == '"\\x"'
