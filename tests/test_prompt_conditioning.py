"""The prompt box speaks A1111's language through the core: schedules switch conditioning at the right step,
AND combines weighted sub-prompts, each distinct text is encoded once, weights change the embedding."""
import numpy as np
import pytest
import torch

from paragoger.core.conditioning import PromptEncoder
from paragoger.core.engine import Engine
from paragoger.core.prompting import prepare_prompts
from paragoger.core.request import GenerationRequest


@pytest.fixture
def components(app_context):
    return app_context.engine.load_model(None, None, app_context.settings)


def test_prompt_edit_switches_the_conditioning_at_its_step_and_encodes_each_text_once(components):
    encoder = PromptEncoder(components)
    prompts = prepare_prompts("a [cat:dog:2] photo", "ugly", steps=5)
    guidance = Engine._guidance(encoder, prompts, cfg_scale=7.0, batch_size=1)
    assert encoder.encoder_calls == 3  # "a cat photo", "a dog photo", "ugly": one 77-token chunk each
    cat, dog = encoder.encode("a cat photo").embeds, encoder.encode("a dog photo").embeds
    active = ["cat" if torch.equal(guidance.positives[0][1].at(step).embeds, cat) else
              "dog" if torch.equal(guidance.positives[0][1].at(step).embeds, dog) else "?" for step in range(5)]
    assert active == ["cat", "cat", "dog", "dog", "dog"]
    assert encoder.encoder_calls == 3


def test_alternation_changes_the_text_every_step(components):
    encoder = PromptEncoder(components)
    guidance = Engine._guidance(encoder, prepare_prompts("[cat|dog] toy", "", steps=4), 7.0, 1)
    cat, dog = encoder.encode("cat toy").embeds, encoder.encode("dog toy").embeds
    picks = [torch.equal(guidance.positives[0][1].at(step).embeds, cat) for step in range(4)]
    assert picks == [True, False, True, False]
    assert torch.equal(guidance.positives[0][1].at(1).embeds, dog)


def test_and_makes_one_weighted_positive_per_part(components):
    encoder = PromptEncoder(components)
    guidance = Engine._guidance(encoder, prepare_prompts("a cat AND a dog :0.5", "", steps=4), 7.0, 2)
    assert [weight for weight, _ in guidance.positives] == [1.0, 0.5]
    assert guidance.copies == 3 and guidance.at(0).embeds.shape[0] == 6


def test_and_generation_runs_and_differs_from_the_first_part_alone(app_context):
    common = dict(steps=3, width=64, height=64, seed=3, save_images=False)
    both = app_context.engine.generate(GenerationRequest(prompt="a cat AND a dog", **common))
    alone = app_context.engine.generate(GenerationRequest(prompt="a cat", **common))
    a, b = (np.asarray(r.images[0].image, dtype=np.int16) for r in (both, alone))
    assert np.abs(a - b).max() > 0
    assert both.images[0].infotext.startswith("a cat AND a dog\n")


def test_emphasis_multiplies_the_token_and_restores_the_mean(components):
    encoder = PromptEncoder(components)
    plain = encoder.encode("a red house").embeds
    weighted = encoder.encode("a (red:1.5) house").embeds
    assert not torch.equal(plain, weighted)
    assert torch.allclose(plain.mean(), weighted.mean(), atol=1e-6)


def test_positive_and_negative_of_different_lengths_share_one_batch(components):
    encoder = PromptEncoder(components)
    long_prompt = ", ".join(["tall tree"] * 40)
    guidance = Engine._guidance(encoder, prepare_prompts(long_prompt, "blurry", steps=2), 7.0, 1)
    assert guidance.at(0).embeds.shape[:2] == (2, 2 * 77)


def test_comments_are_removed_before_encoding(app_context):
    prompts = prepare_prompts("a cat # with a hat\nsitting", "", steps=2)
    assert prompts.texts()[0] == "a cat \nsitting"
    kept = prepare_prompts("a cat # with a hat", "", steps=2, comments=False)
    assert kept.texts()[0] == "a cat # with a hat"


def test_lora_tags_are_removed_from_the_encoded_text_but_kept_in_the_infotext_prompt():
    prompts = prepare_prompts("a cat <lora:paper:0.8>, best", "", steps=2)
    assert prompts.texts()[0] == "a cat , best"
    assert prompts.prompt == "a cat <lora:paper:0.8>, best"
    assert [(call.kind, call.name) for call in prompts.extra_networks] == [("lora", "paper")]


def test_styles_are_applied_in_order(app_context):
    app_context.styles.save_style(__import__("paragoger.prompts", fromlist=["PromptStyle"]).PromptStyle(
        name="film", prompt="{prompt}, film grain", negative_prompt="cartoon"))
    prompts = prepare_prompts("a cat", "blurry", steps=2, styles=app_context.styles, style_names=["film"])
    assert prompts.prompt == "a cat, film grain" and prompts.negative_prompt == "blurry, cartoon"


def test_text_is_cleaned_like_clip_does_before_tokenizing(components):
    encoder = PromptEncoder(components)
    assert torch.equal(encoder.encode("fish &amp;  chips").embeds, encoder.encode("fish & chips").embeds)
