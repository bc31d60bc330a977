"""The example extension: one sampler and one always-on script, using only the public API.

* "Example Euler": Euler over trailing timesteps, as a subclass of diffusers' EulerDiscreteScheduler (the place
  where an author would change the update rule).
* "Example Euler a (step function)": ancestral Euler written as a step function over the model's denoiser, the
  shortest way to try a sampler from a paper.
* "Example stamp" (always on, off by default): writes "Example note" and "Example steps seen" (counted by a
  per-step callback registered for that generation only) into each image's parameters.
"""
from diffusers import EulerDiscreteScheduler

from paragoger.ext import api


class ExampleEulerScheduler(EulerDiscreteScheduler):
    """Euler, unchanged: override ``step`` here to try another update rule."""

    def step(self, model_output, timestep, sample, *args, **kwargs):
        return super().step(model_output, timestep, sample, *args, **kwargs)


def euler_ancestral_step(x, denoised, sigma, sigma_next, info):
    """One ancestral Euler step: go down to ``sigma_down`` deterministically, then add fresh noise of size
    ``sigma_up``, so the total noise level is ``sigma_next``."""
    sigma_up = (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5
    sigma_down = (sigma_next**2 - sigma_up**2) ** 0.5
    x = x + (x - denoised) / sigma * (sigma_down - sigma)
    return x + info.noise_like(x) * sigma_up if sigma_next > 0 else x


class ExampleStamp(api.Script):
    title = "Example stamp"
    always_on = True

    def __init__(self, default_note: str = "made with the example extension"):
        self.default_note = default_note

    def ui(self, is_img2img):
        return {
            "enabled": api.Checkbox("Add the example fields to the parameters", False),
            "note": api.Textbox("Note", self.default_note),
        }

    def before_process(self, p, args):
        if not args["enabled"]:
            return
        seen = p.extra_params  # the counter lives in this generation's own request copy

        def count(state):
            seen["Example steps seen"] = seen.get("Example steps seen", 0) + 1

        p.on_denoising_step(count)

    def postprocess_image(self, p, image, args):
        if args["enabled"] and args["note"]:
            image.fields["Example note"] = args["note"]


def setup(ext):
    ext.register_sampler("Example Euler", ExampleEulerScheduler, {"timestep_spacing": "trailing"},
                         aliases=("example_euler",), how="EulerDiscreteScheduler subclass, trailing timesteps")
    ext.register_step_sampler("Example Euler a (step function)", euler_ancestral_step, adds_noise=True,
                              aliases=("example_euler_a",), how="ancestral Euler as a step function")
    ext.register_script(ExampleStamp(ext.flags.example_note or "made with the example extension"))
