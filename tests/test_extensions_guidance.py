"""Guidance hooks: what ControlNet-style and dynamic-CFG extensions need. An extension sees every UNet call of a
generation and may change its inputs (CFG scale, text conditioning, extra UNet arguments) and its raw output."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from tests.test_extensions import (extensions_dir, generate, png_fields,  # noqa: F401
                                   write_extension)


def pixels(result) -> np.ndarray:
    return np.asarray(Image.open(result.images[0].path).convert("RGB"), dtype=np.int16)


def test_an_extension_changes_the_cfg_scale_at_every_step(extensions_dir, start_context, tmp_path):
    log = tmp_path / "calls.jsonl"
    write_extension(extensions_dir, "dyncfg", {"scripts/dyncfg.py": f'''
        import json

        def setup(ext):
            def lower_cfg(state):
                with open({str(log)!r}, "a") as out:
                    out.write(json.dumps([state.step, state.steps, state.copies,
                                          state.model_input.shape[0], state.cfg_scale]) + "\\n")
                state.cfg_scale = 3.0
            ext.on_cfg_denoiser(lower_cfg)
    '''})
    context = start_context()
    assert context.extensions.get("dyncfg").status == "loaded"
    guided_at_3 = generate(context, cfg_scale=9.0)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    # every step, before the UNet: two copies (negative, positive), the request's scale
    assert calls == [[step, 3, 2, 2, 9.0] for step in range(3)]

    context.extensions.callbacks.remove_owner("dyncfg")
    asked_for_3 = generate(context, cfg_scale=3.0)
    assert np.array_equal(pixels(guided_at_3), pixels(asked_for_3))
    assert not np.array_equal(pixels(generate(context, cfg_scale=9.0)), pixels(asked_for_3))


RESIDUAL_SCRIPT = '''
import torch
from paragoger.ext import api


class ControlResiduals(api.Script):
    """What a ControlNet hands the UNet, reduced to constants: one residual per skip connection of the down path
    (the conv_in output, each resnet, each downsampler) and one for the middle block."""

    title = "Control residuals"
    always_on = True

    def ui(self, is_img2img):
        return {"strength": api.Number("Strength", 0.0), "channels": api.Textbox("Block channels", ""),
                "layers": api.Number("Layers per block", 1)}

    def before_process(self, p, args):
        if not args["channels"]:
            return  # not asked for in this generation
        channels = [int(c) for c in args["channels"].split(",")]

        def add_residuals(state):
            batch, _, height, width = state.model_input.shape
            value = float(args["strength"])
            shapes = [(channels[0], height, width)]
            for level, count in enumerate(channels):
                shapes += [(count, height, width)] * int(args["layers"])
                if level < len(channels) - 1:
                    height, width = height // 2, width // 2
                    shapes.append((count, height, width))
            state.unet_kwargs["down_block_additional_residuals"] = tuple(
                torch.full((batch, *shape), value) for shape in shapes)
            state.unet_kwargs["mid_block_additional_residual"] = torch.full((batch, channels[-1], height, width),
                                                                            value)

        p.on_cfg_denoiser(add_residuals)
        p.on_cfg_denoised(lambda state: p.extra_params.__setitem__("Predictions", state.noise_pred.shape[0]))
'''


def test_extra_unet_inputs_from_a_script_reach_the_unet(extensions_dir, start_context):
    write_extension(extensions_dir, "control", {"scripts/control.py": RESIDUAL_SCRIPT})
    context = start_context()
    baseline = generate(context)
    config = context.cache.current.unet.config
    shape = {"channels": ",".join(str(c) for c in config.block_out_channels), "layers": config.layers_per_block}

    def with_residuals(strength):
        return generate(context, alwayson_scripts={"Control residuals": {"args": {"strength": strength, **shape}}})

    zero, pushed = with_residuals(0.0), with_residuals(2.0)
    assert np.array_equal(pixels(baseline), pixels(zero))          # zero residuals change nothing
    assert np.abs(pixels(baseline) - pixels(pushed)).mean() > 1.0  # real ones steer the UNet
    assert png_fields(pushed)["Predictions"] == "2"  # negative + positive, seen before CFG combined them


def test_replacing_the_raw_prediction_changes_the_image(extensions_dir, start_context):
    write_extension(extensions_dir, "flip", {"scripts/flip.py": '''
        def setup(ext):
            def flip(state):
                state.noise_pred = -state.noise_pred
            ext.on_cfg_denoised(flip)
    '''})
    context = start_context()
    flipped = generate(context)
    context.extensions.callbacks.remove_owner("flip")
    plain = generate(context)
    assert np.abs(pixels(flipped) - pixels(plain)).mean() > 1.0
