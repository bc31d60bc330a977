"""Loopback (img2img): the result of each pass is the input of the next, ``loops`` times; the denoising strength
is multiplied by the change factor after each pass (kept within 0.1-1, as A1111's). The passes' images come back
with a grid of them, saved like a batch grid."""
from __future__ import annotations

import dataclasses
import random

from paragoger.ext import api


class Loopback(api.Script):
    title = "Loopback"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        return {
            "loops": api.Slider("Loops", 1, 32, 4, step=1),
            "denoising_strength_change_factor": api.Slider("Denoising strength change factor", 0.9, 1.1, 1,
                                                           step=0.01),
        }

    def run(self, p, args):
        loops = int(args.get("loops") or 1)
        if not 1 <= loops <= 1000:
            raise api.ScriptError(f"Loopback: loops must be 1 to 1000, not {loops}.")
        factor = float(args.get("denoising_strength_change_factor") or 1)
        p.check()
        p.check_plan(self.title, loops)
        seed = p.request.seed if p.request.seed not in (None, -1) else random.randrange(0, 4294967295)
        strength = p.request.denoising_strength
        init = list(p.request.init_images)
        results = []
        for index in range(loops):
            if p.interrupted:
                break
            p.set_progress_text(f"Loopback: {index + 1}/{loops}")
            extra = dict(p.request.extra_params, **{"Loopback": f"{index + 1}/{loops}"})
            result = p.generate(init_images=init, seed=seed, denoising_strength=strength, batch_size=1, n_iter=1,
                                do_not_save_grid=True, extra_params=extra)
            results.append(result)
            init = [result.images[0].image]
            seed += 1
            strength = min(max(strength * factor, 0.1), 1.0)
        if not results:
            raise api.ScriptError("Loopback was interrupted before the first image.")
        first = results[0]
        images = [item for result in results for item in result.images]
        grid = grid_path = None
        if len(images) > 1:
            grid = api.make_grid([item.image for item in images])
            grid_path = p.save_grid(grid, images[0].infotext)
        return dataclasses.replace(first, images=images, grid=grid, grid_path=grid_path,
                                   interrupted=len(results) < loops)
