"""Tiny captioning models with real architectures, written as the folders a real download gives.

* BLIP: ``BlipForConditionalGeneration`` at widths of 32 with its ``BlipProcessor``; the tokenizer is BERT
  WordPiece over ``BLIP_WORDS`` (vocab.txt written here, [DEC]/[ENC] added as in Salesforce's files).
* CLIP: ``CLIPModel`` at widths of 32 with CLIP's own BPE vocabulary (configs/tokenizers/clip).
* WD tagger: a timm ViT (the architecture of wd-vit-tagger-v3, at 32 px and 32 channels) with config.json and
  selected_tags.csv in SmilingWolf's layout. Its classifier is set so that each tag's score is about the one
  in ``TINY_TAGS`` whatever the picture (within 0.01), which makes thresholds testable.

Weights are random from fixed seeds (same seed, same bytes); captions are words of the vocabulary in no sensible
order. Each folder loads through exactly the code path a downloaded model takes.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from paragoger.model_manager.fixtures import _fill

BLIP_WORDS = tuple("""a an the of on in with and near under over behind at two three
cat dog bird horse woman man girl boy child people house tree forest mountain river lake sea beach sky cloud sun
city street car boat flower garden field road bridge table chair window door room wall
red blue green yellow white black small large old young
sitting standing walking running holding looking painting photo picture drawing""".split())
_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# name, category (9 rating, 0 general, 4 character), the score the tiny tagger gives it
TINY_TAGS = (("general", 9, 0.90), ("sensitive", 9, 0.60), ("questionable", 9, 0.05), ("explicit", 9, 0.01),
             ("1girl", 0, 0.97), ("solo", 0, 0.88), ("long_hair", 0, 0.81), ("smile", 0, 0.66),
             ("^_^", 0, 0.58), ("star_(symbol)", 0, 0.73), ("open_mouth", 0, 0.42), ("blue_sky", 0, 0.30),
             ("hatsune_miku", 4, 0.77), ("red_eyes", 0, 0.12))

_BLIP_TEXT = {"hidden_size": 32, "encoder_hidden_size": 32, "intermediate_size": 64, "projection_dim": 32,
              "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 64}
_BLIP_VISION = {"hidden_size": 32, "intermediate_size": 64, "projection_dim": 32, "num_hidden_layers": 2,
                "num_attention_heads": 2, "image_size": 32, "patch_size": 8}
_CLIP_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "max_position_embeddings": 77, "projection_dim": 16}
_CLIP_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                "image_size": 32, "patch_size": 8, "projection_dim": 16}
# wd-vit-tagger-v3's timm arguments, at 32 px, 32 channels and 2 blocks.
_TAGGER_ARCHITECTURE = "vit_base_patch16_224"
_TAGGER_ARGS = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2, "class_token": False,
                "global_pool": "avg", "fc_norm": False, "act_layer": "gelu_tanh"}


def _seeded(build, seed: int):
    """``build()`` without touching the global RNG, then weights from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        module = build()
    _fill(module, torch.Generator().manual_seed(seed))
    return module.eval().requires_grad_(False)


def write_blip_folder(folder: Path, *, seed: int = 0) -> Path:
    """config.json, model.safetensors, processor and tokenizer files (vocab.txt over ``BLIP_WORDS``)."""
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocabulary = [*_SPECIAL, *BLIP_WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocabulary)}, do_lower_case=True,
                              bos_token="[DEC]", additional_special_tokens=["[ENC]"], model_max_length=512)
    text = {**_BLIP_TEXT, "vocab_size": len(tokenizer), "bos_token_id": tokenizer.convert_tokens_to_ids("[DEC]"),
            "pad_token_id": tokenizer.pad_token_id, "sep_token_id": tokenizer.sep_token_id,
            "eos_token_id": tokenizer.sep_token_id}
    config = BlipConfig(text_config=text, vision_config=_BLIP_VISION, projection_dim=32, image_text_hidden_size=32)
    _seeded(lambda: BlipForConditionalGeneration(config), seed).save_pretrained(folder)
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def write_clip_folder(folder: Path, *, seed: int = 0) -> Path:
    """config.json, model.safetensors, processor and CLIP tokenizer files."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from paragoger.model_manager.configs import clip_tokenizer

    folder = Path(folder)
    tokenizer = clip_tokenizer()
    config = CLIPConfig(text_config={**_CLIP_TEXT, "vocab_size": len(tokenizer)}, vision_config=_CLIP_VISION,
                        projection_dim=16)
    _seeded(lambda: CLIPModel(config), seed).save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def write_tagger_folder(folder: Path, *, seed: int = 0, tags=TINY_TAGS) -> Path:
    """config.json, model.safetensors and selected_tags.csv, as the wd-*-tagger-v3 repositories hold them."""
    import timm
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = _seeded(lambda: timm.create_model(_TAGGER_ARCHITECTURE, pretrained=False, num_classes=len(tags),
                                              **_TAGGER_ARGS), seed)
    head = model.get_classifier()
    with torch.no_grad():
        head.weight.mul_(1e-3)  # the picture moves a score by well under 0.01
        head.bias.copy_(torch.tensor([math.log(score / (1 - score)) for _, _, score in tags]))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    size = _TAGGER_ARGS["img_size"]
    config = {"architecture": _TAGGER_ARCHITECTURE, "num_classes": len(tags), "num_features": model.num_features,
              "global_pool": "avg", "model_args": _TAGGER_ARGS,
              "pretrained_cfg": {"custom_load": False, "input_size": [3, size, size], "fixed_input_size": False,
                                 "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "center",
                                 "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "num_classes": len(tags),
                                 "pool_size": None, "first_conv": None, "classifier": None}}
    (folder / "config.json").write_text(json.dumps(config, indent=4), encoding="utf-8")
    rows = ["tag_id,name,category,count"]
    rows += [f"{1000 + i},{name},{category},{50000 - 1000 * i}" for i, (name, category, _) in enumerate(tags)]
    (folder / "selected_tags.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def write_caption_models(models_dir: Path, *, seed: int = 0, clip: bool = True) -> dict[str, Path]:
    """All three under an A1111 models folder: BLIP/tiny-blip, CLIP/tiny-clip, deepbooru/tiny-wd-tagger."""
    models_dir = Path(models_dir)
    made = {"blip": write_blip_folder(models_dir / "BLIP" / "tiny-blip", seed=seed),
            "tagger": write_tagger_folder(models_dir / "deepbooru" / "tiny-wd-tagger", seed=seed)}
    if clip:
        made["clip"] = write_clip_folder(models_dir / "CLIP" / "tiny-clip", seed=seed)
    return made
