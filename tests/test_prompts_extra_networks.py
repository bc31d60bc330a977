"""Extra network tags: removed from the text exactly as A1111 removes them, arguments read as A1111 reads them."""

import pytest

from paragoger.prompts import ExtraNetworkCall, extract_extra_networks, lora_weights
from paragoger.prompts.extra_networks import lora_dyn_dim, lora_name


def test_lora_tag_removed_and_weights_read():
    text, calls = extract_extra_networks("1girl, <lora:fubuki:0.8>, smile")
    assert text == "1girl, , smile"
    assert calls == [ExtraNetworkCall("lora", "fubuki", ["fubuki", "0.8"])]
    assert lora_weights(calls[0]) == (0.8, 0.8)


def test_unet_weight_is_the_second_number():
    _, [call] = extract_extra_networks("<lora:name:0.8:0.5>")
    assert lora_weights(call) == (0.8, 0.5)


def test_lora_without_weight_defaults_to_one():
    _, [call] = extract_extra_networks("<lora:name>")
    assert call.args == ["name"]
    assert lora_weights(call) == (1.0, 1.0)


def test_named_te_and_unet_weights():
    _, [call] = extract_extra_networks("<lora:name:te=0.5:unet=0.3>")
    assert call.named == {"te": "0.5", "unet": "0.3"}
    assert call.positional == ["name"]
    assert lora_weights(call) == (0.5, 0.3)


def test_named_weight_overrides_positional():
    _, [call] = extract_extra_networks("<lora:name:0.8:unet=0.2>")
    assert lora_weights(call) == (0.8, 0.2)
    _, [call] = extract_extra_networks("<lora:name:0.8:0.6:te=0.1>")
    assert lora_weights(call) == (0.1, 0.6)


def test_named_te_only_sets_unet_too():
    _, [call] = extract_extra_networks("<lora:name:te=0.4>")
    assert lora_weights(call) == (0.4, 0.4)


def test_dyn_dim():
    _, [call] = extract_extra_networks("<lora:name:1:1:8>")
    assert lora_dyn_dim(call) == 8
    _, [call] = extract_extra_networks("<lora:name:dyn=16>")
    assert lora_dyn_dim(call) == 16
    _, [call] = extract_extra_networks("<lora:name:1>")
    assert lora_dyn_dim(call) is None


def test_two_equals_signs_is_positional():
    _, [call] = extract_extra_networks("<lora:name:a=b=c>")
    assert call.positional == ["name", "a=b=c"]
    assert call.named == {}


def test_bad_weight_raises_like_a1111():
    _, [call] = extract_extra_networks("<lora:name:strong>")
    with pytest.raises(ValueError):
        lora_weights(call)


def test_any_kind_of_tag():
    text, calls = extract_extra_networks("a <hypernet:anime:0.5> b <lyco:x> c <my_ext:one:two:three>")
    assert text == "a  b  c "
    assert [(call.kind, call.name, call.args) for call in calls] == [
        ("hypernet", "anime", ["anime", "0.5"]),
        ("lyco", "x", ["x"]),
        ("my_ext", "one", ["one", "two", "three"]),
    ]


def test_tags_in_order_and_repeated():
    _, calls = extract_extra_networks("<lora:a:1><lora:b:0.5><lora:a:0.2>")
    assert [call.name for call in calls] == ["a", "b", "a"]


def test_not_tags():
    for prompt in ["<lora>", "<lora:>", "< lora:x>", "<lo-ra:x>", "a > b < c", "<:x>"]:
        assert extract_extra_networks(prompt) == (prompt, [])


def test_args_may_hold_spaces_brackets_and_newlines():
    text, [call] = extract_extra_networks("x<lora:my lora (v2):0.7\n>y")
    assert text == "xy"
    assert call.args == ["my lora (v2)", "0.7\n"]
    assert lora_weights(call) == (0.7, 0.7)


def test_unicode_kind_and_name():
    text, [call] = extract_extra_networks("猫 <lora:猫耳:0.6>")
    assert text == "猫 "
    assert call.name == "猫耳"


def test_tag_ends_at_first_closing_angle():
    text, [call] = extract_extra_networks("<lora:a:1>>")
    assert text == ">"
    assert call.args == ["a", "1"]


def test_lora_name_is_first_positional():
    _, [call] = extract_extra_networks("<lora:name:0.5>")
    assert lora_name(call) == "name"


def test_no_tags():
    assert extract_extra_networks("plain (text:1.2)") == ("plain (text:1.2)", [])
