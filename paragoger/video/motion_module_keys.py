"""Key names of AnimateDiff motion modules: the original layout the files use, and diffusers' ``MotionAdapter``
layout the app runs.

Original (guoyww/AnimateDiff, and every ``mm_*.ckpt`` users have)::

    down_blocks.1.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_q.weight
    down_blocks.1.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe
    down_blocks.1.motion_modules.0.temporal_transformer.transformer_blocks.0.norms.0.weight   (ff_norm, proj_in...)

``MotionAdapter``::

    down_blocks.1.motion_modules.0.transformer_blocks.0.attn2.to_q.weight
    down_blocks.1.motion_modules.0.transformer_blocks.0.pos_embed.pe
    down_blocks.1.motion_modules.0.transformer_blocks.0.norm1.weight                           (norm3, proj_in...)

The two layouts differ by renames only, except the position encoding: the original stores one ``pe`` per
attention block (the same sinusoid twice), diffusers keeps one per transformer block and adds it before each of
the two attentions. Both attention blocks' ``pe`` therefore map to the one ``pos_embed.pe`` key.
(diffusers' ``convert_animatediff_checkpoint_to_diffusers`` makes the same renames and drops ``pe``; the tests
check that these functions agree with it.)
"""
from __future__ import annotations

import re

# original part -> MotionAdapter part, each matched as whole dotted segments.
_RENAMES = (
    (re.compile(r"\.temporal_transformer\."), "."),
    (re.compile(r"\.attention_blocks\.\d+\.pos_encoder\.pe$"), ".pos_embed.pe"),
    (re.compile(r"\.attention_blocks\.0\."), ".attn1."),
    (re.compile(r"\.attention_blocks\.1\."), ".attn2."),
    (re.compile(r"\.norms\.0\."), ".norm1."),
    (re.compile(r"\.norms\.1\."), ".norm2."),
    (re.compile(r"\.ff_norm\."), ".norm3."),
)
_ORIGINAL_MARKS = (".temporal_transformer.", ".attention_blocks.", ".norms.", ".ff_norm.", ".pos_encoder.")
_ADAPTER_MARKS = (".attn1.", ".attn2.", ".norm1.", ".norm2.", ".norm3.", ".pos_embed.")
# Where a motion module sits: "down_blocks.0.motion_modules.1." -> ("down_blocks.0", 1, rest)
MODULE_KEY = re.compile(r"^(down_blocks\.\d+|up_blocks\.\d+|mid_block)\.motion_modules\.(\d+)\.(.+)$")


def is_original_layout(keys) -> bool:
    return any(mark in key for key in keys for mark in _ORIGINAL_MARKS)


def is_adapter_layout(keys) -> bool:
    return any(".motion_modules." in key and mark in key for key in keys for mark in _ADAPTER_MARKS)


def to_adapter_key(key: str) -> str:
    """The ``MotionAdapter`` name of one original key (keys already in that layout come back unchanged)."""
    for pattern, replacement in _RENAMES:
        key = pattern.sub(replacement, key)
    return key


def to_original_keys(key: str) -> list[str]:
    """The original name(s) of one ``MotionAdapter`` key: two for ``pos_embed.pe`` (one per attention block)."""
    head, dot, rest = key.partition(".transformer_blocks.")
    if not dot:  # norm, proj_in, proj_out of the temporal transformer
        match = MODULE_KEY.match(key)
        return [f"{match[1]}.motion_modules.{match[2]}.temporal_transformer.{match[3]}"] if match else [key]
    head = f"{head}.temporal_transformer"
    if rest.endswith(".pos_embed.pe"):
        block = rest.removesuffix(".pos_embed.pe")
        return [f"{head}.transformer_blocks.{block}.attention_blocks.{i}.pos_encoder.pe" for i in (0, 1)]
    rest = (rest.replace(".attn1.", ".attention_blocks.0.").replace(".attn2.", ".attention_blocks.1.")
            .replace(".norm1.", ".norms.0.").replace(".norm2.", ".norms.1.").replace(".norm3.", ".ff_norm."))
    return [f"{head}.transformer_blocks.{rest}"]
