"""The network annotators this version lists but cannot run yet: lineart, soft edge, openpose, M-LSD, segmentation.

Each needs its own network (a pix2pix-style generator, HED, PiDiNet, the OpenPose body/hand CNNs, M-LSD,
OneFormer, UniFormer) and weights that sd-webui-controlnet downloads under the file names below (into
``annotator/downloads/<folder>/``). None of these networks is in diffusers or transformers. ``controlnet-aux``
0.0.10 implements several of them, but importing it needs scikit-image (``anyline``, ``leres``), imports every
detector (Zoe, SAM, ...) at once, fetches from the Hugging Face hub unless given a folder, and reads the weights
with a bare ``torch.load`` of a pickle, bypassing the safe loaders; it has no OneFormer or UniFormer. So these
modules are listed with their sliders, like the extension lists them, and running one tells the user which file
the module needs, where it goes, and that this version cannot run it yet (never a traceback).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from paragoger.errors import UserError


@dataclass(frozen=True)
class NetworkAnnotator:
    name: str                   # sd-webui-controlnet's module name (its UI label)
    aliases: tuple[str, ...]    # its internal names
    files: tuple[str, ...]      # weight files, under the names users have
    downloads_folder: str       # the folder under the extension's annotator/downloads that holds them
    shows_resolution: bool      # whether the extension shows the resolution slider for it
    sliders: tuple = ()         # SliderSpec-like (label, default, minimum, maximum, step) for threshold a, b


NETWORK_ANNOTATORS = (
    NetworkAnnotator("lineart_realistic", ("lineart",), ("sk_model.pth",), "lineart", False),
    NetworkAnnotator("lineart_coarse", (), ("sk_model2.pth",), "lineart", False),
    NetworkAnnotator("lineart_anime", (), ("netG.pth",), "lineart_anime", False),
    NetworkAnnotator("softedge_hed", ("hed",), ("ControlNetHED.pth",), "hed", True),
    NetworkAnnotator("softedge_pidinet", ("pidinet",), ("table5_pidinet.pth",), "pidinet", False),
    NetworkAnnotator("openpose", (), ("body_pose_model.pth", "hand_pose_model.pth"), "openpose", True),
    NetworkAnnotator("mlsd", (), ("mlsd_large_512_fp32.pth",), "mlsd", True,
                     (("MLSD Value Threshold", 0.1, 0.01, 2.0, 0.01),
                      ("MLSD Distance Threshold", 0.1, 0.01, 20.0, 0.01))),
    NetworkAnnotator("seg_ofade20k", ("oneformer_ade20k",), ("250_16_swin_l_oneformer_ade20k_160k.pth",),
                     "oneformer", False),
    NetworkAnnotator("seg_ufade20k", ("segmentation",), ("upernet_global_small.pth",), "uniformer", True),
)


def not_runnable(annotator: NetworkAnnotator, annotator_dir: Path):
    """The preprocessor's ``run``: says which files go where and that this version cannot run it yet."""
    def run(image, *, resolution: int, threshold_a: float, threshold_b: float):
        raise UserError("control_annotator_not_runnable", module=annotator.name, file=", ".join(annotator.files),
                        folder=Path(annotator_dir), downloads=annotator.downloads_folder)

    return run
