"""Image to text (paragoger/caption): the captioner registry, BLIP + CLIP flavours ("clip") and WD tagger tags
("deepdanbooru"), read offline from tiny model folders the project's fixture code writes in the real layouts."""
from __future__ import annotations

import shutil

import pytest
from PIL import Image, ImageDraw

from paragoger.caption import CaptionerRegistry, default_captioners
from paragoger.caption.flavours import load_categories
from paragoger.caption.tags import TagOptions, format_tags
from paragoger.devices import choose_device
from paragoger.errors import ModelLoadError, NotFoundError, UserError
from paragoger.paths import CONFIGS_DIR
from tests.fixtures.caption import BLIP_WORDS

CPU = choose_device("cpu")
BUILT_IN_LISTS = load_categories([CONFIGS_DIR / "interrogate"])


def picture(colour=(200, 40, 40), size=(80, 60)) -> Image.Image:
    image = Image.new("RGB", size, colour)
    ImageDraw.Draw(image).ellipse((10, 10, 50, 45), fill=(30, 30, 220))
    return image


def only_blip(caption_models, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(caption_models / "BLIP", models / "BLIP")
    return models


# ---------------------------------------------------------------------------------------------- the registry


class Upper:
    name = "upper"

    def __init__(self):
        self.unloaded = 0

    def caption(self, image, options):
        return f"{image.mode} {image.size[0]}x{image.size[1]}"

    def unload(self):
        self.unloaded += 1


def test_registry_finds_captioners_by_name_and_refuses_unknown_ones_with_the_known_names():
    registry = CaptionerRegistry([Upper()])
    assert registry.names() == ["upper"] and registry.get("UPPER").name == "upper"
    with pytest.raises(NotFoundError, match="Unknown captioner 'nope'. Known captioners: upper"):
        registry.get("nope")


def test_registry_hands_captioners_an_rgb_picture_and_unloads_unless_asked_to_keep_models():
    captioner = Upper()
    registry = CaptionerRegistry([captioner])
    transparent = Image.new("RGBA", (5, 4), (0, 0, 0, 0))
    assert registry.caption("upper", transparent, {}) == "RGB 5x4"
    assert captioner.unloaded == 1
    registry.caption("upper", transparent, {"interrogate_keep_models_in_memory": True})
    assert captioner.unloaded == 1


def test_built_in_captioners_are_clip_and_deepdanbooru(tmp_path):
    assert default_captioners(tmp_path, CPU).names() == ["clip", "deepdanbooru"]


# ------------------------------------------------------------------------------------------ clip: BLIP + CLIP


def test_blip_caption_is_made_of_the_tiny_models_words_and_depends_on_the_picture(caption_models, tmp_path):
    registry = default_captioners(only_blip(caption_models, tmp_path), CPU)
    red = registry.caption("clip", picture(), {})
    green = registry.caption("clip", picture((40, 200, 40)), {})
    assert red and set(red.split()) <= set(BLIP_WORDS)
    assert "," not in red  # no CLIP folder: the sentence alone
    assert red != green
    assert registry.caption("clip", picture(), {}) == red  # same picture, same text


def test_blip_length_settings_bound_the_sentence(caption_models, tmp_path):
    registry = default_captioners(only_blip(caption_models, tmp_path), CPU)
    short = registry.caption("clip", picture(), {"interrogate_clip_min_length": 2, "interrogate_clip_max_length": 6})
    assert 1 <= len(short.split()) <= 5


def test_clip_folder_adds_one_medium_artist_movement_and_trend_and_three_flavours(caption_models):
    registry = default_captioners(caption_models, CPU)
    text = registry.caption("clip", picture(), {})
    sentence, *flavours = text.split(", ")
    assert set(sentence.split()) <= set(BLIP_WORDS)
    lists = {category.name: category.items for category in BUILT_IN_LISTS}
    assert [category.name for category in BUILT_IN_LISTS] == ["mediums", "artists", "movements", "trending",
                                                               "flavors"]
    assert len(flavours) == 1 + 1 + 1 + 1 + 3
    for entry, name in zip(flavours, ["mediums", "artists", "movements", "trending"]):
        assert entry in lists[name]
    assert set(flavours[4:]) <= set(lists["flavors"])


def test_return_ranks_writes_each_flavour_with_its_score(caption_models):
    registry = default_captioners(caption_models, CPU)
    keep = {"interrogate_keep_models_in_memory": True}
    plain = registry.caption("clip", picture(), keep).split(", ")
    ranked = registry.caption("clip", picture(), {**keep, "interrogate_return_ranks": True}).split(", ")
    assert ranked[0] == plain[0]
    for entry, ranked_entry in zip(plain[1:], ranked[1:]):
        assert ranked_entry.startswith(f"({entry}:") and ranked_entry.endswith(")")
        assert 0.0 < float(ranked_entry[len(entry) + 2:-1]) <= 1.0


def test_a_list_in_models_interrogate_replaces_the_built_in_one(caption_models, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(caption_models, models)
    (models / "interrogate").mkdir()
    (models / "interrogate" / "mediums.txt").write_text("a cross-stitch\n", encoding="utf-8")
    text = default_captioners(models, CPU).caption("clip", picture(), {})
    assert text.split(", ")[1] == "a cross-stitch"


def test_without_a_blip_folder_the_message_names_the_folder_and_the_model(tmp_path):
    registry = default_captioners(tmp_path / "models", CPU)
    with pytest.raises(UserError) as error:
        registry.caption("clip", picture(), {})
    message = str(error.value)
    assert str(tmp_path / "models" / "BLIP") in message and "blip-image-captioning-base" in message


def test_a_broken_blip_folder_is_a_clear_error_not_a_crash(caption_models, tmp_path):
    models = only_blip(caption_models, tmp_path)
    (models / "BLIP" / "tiny-blip" / "model.safetensors").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="Could not load the BLIP model in"):
        default_captioners(models, CPU).caption("clip", picture(), {})


# ------------------------------------------------------------------------------------ deepdanbooru: WD tagger


def test_tags_above_the_threshold_alphabetical_with_spaces_and_escaped_brackets_by_default(caption_models):
    text = default_captioners(caption_models, CPU).caption("deepdanbooru", picture(), {})
    assert text == r"1girl, ^_^, hatsune miku, long hair, smile, solo, star \(symbol\)"


def test_rating_tags_never_appear_even_when_they_score_highest(caption_models):
    text = default_captioners(caption_models, CPU).caption(
        "deepdanbooru", picture(), {"interrogate_deepbooru_score_threshold": 0.0})
    tags = text.split(", ")
    assert "blue sky" in tags and "red eyes" in tags
    assert not {"general", "sensitive", "questionable", "explicit"} & set(tags)


def test_tag_settings_order_by_score_keep_underscores_and_leave_brackets_alone(caption_models):
    options = {"interrogate_deepbooru_score_threshold": 0.7, "deepbooru_sort_alpha": False,
               "deepbooru_use_spaces": False, "deepbooru_escape": False, "deepbooru_filter_tags": "solo"}
    text = default_captioners(caption_models, CPU).caption("deepdanbooru", picture(), options)
    assert text == "1girl, long_hair, hatsune_miku, star_(symbol)"


def test_tag_scores_with_return_ranks(caption_models):
    options = {"interrogate_deepbooru_score_threshold": 0.8, "interrogate_return_ranks": True}
    text = default_captioners(caption_models, CPU).caption("deepdanbooru", picture(), options)
    assert text == "(1girl:0.970), (long hair:0.810), (solo:0.880)"


def test_format_tags_keeps_faces_and_filters_by_either_spelling():
    scores = {"o_o": 0.9, "looking_at_viewer": 0.8, "hat_(object)": 0.7, "[cosplay]": 0.6}
    text = format_tags(scores, TagOptions(leave_out=frozenset({"looking_at_viewer"})))
    assert text == r"\[cosplay\], hat \(object\), o_o"
    by_space = TagOptions.from_settings({"deepbooru_filter_tags": "looking at viewer, o_o"})
    assert format_tags(scores, by_space) == r"\[cosplay\], hat \(object\)"


def test_without_a_tagger_folder_the_message_names_the_folder(tmp_path):
    with pytest.raises(UserError, match="wd-vit-tagger-v3") as error:
        default_captioners(tmp_path / "models", CPU).caption("deepdanbooru", picture(), {})
    assert str(tmp_path / "models" / "deepbooru") in str(error.value)


def test_a_tag_list_that_does_not_fit_the_model_is_refused(caption_models, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(caption_models / "deepbooru", models / "deepbooru")
    tags = models / "deepbooru" / "tiny-wd-tagger" / "selected_tags.csv"
    tags.write_text("\n".join(tags.read_text().splitlines()[:-2]) + "\n")
    with pytest.raises(ModelLoadError, match="predicts 14 tags but its selected_tags.csv lists 12"):
        default_captioners(models, CPU).caption("deepdanbooru", picture(), {})


# --------------------------------------------------------------------------------- through the app's queue


def test_app_context_captions_through_the_queue_and_frees_models_unless_kept(data_dir, caption_models):
    from paragoger.cli import parse_args
    from paragoger.context import AppContext

    shutil.copytree(caption_models, data_dir / "models", dirs_exist_ok=True)
    context = AppContext(parse_args(["--data-dir", str(data_dir)], env={}))
    try:
        tagger = context.captioners.get("deepdanbooru")
        assert context.interrogate(picture(), "deepdanbooru").startswith("1girl, ")
        assert not tagger.loaded()
        context.settings.update({"interrogate_keep_models_in_memory": True})
        context.interrogate(picture(), "deepdanbooru")
        assert tagger.loaded()
        assert set(context.interrogate(picture(), "clip").split(", ")[0].split()) <= set(BLIP_WORDS)
        assert not tagger.loaded()  # only the captioner used last stays loaded
        assert [job.kind for job in context.queue.finished()][-3:] == ["caption"] * 3
        with pytest.raises(UserError, match="Choose a picture"):
            context.interrogate(None, "clip")
    finally:
        context.close()
