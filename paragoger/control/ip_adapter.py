"""IP-Adapter (ip-adapter_sd15, ip-adapter-plus_sd15 ...): recognising its files, building its image projection,
and applying it to the shared UNet for one pass.

A file holds ``image_proj.*`` (the projection of the CLIP image embedding into extra "image tokens": plain
``proj.weight`` + ``norm.*`` for ImageProjection, ``latents`` + perceiver layers for Plus's Resampler) and
``ip_adapter.N.to_k_ip.weight`` / ``to_v_ip.weight`` for the UNet's cross-attention layers in
``unet.attn_processors`` order (N = 1, 3, 5 ...: the self-attention layers take the even numbers). ``.bin`` files
hold ``{"image_proj": {...}, "ip_adapter": {...}}``, flattened by ``models`` to the same names. Both parts are
converted by diffusers' own ``UNet2DConditionLoadersMixin`` converters.

Applying: ``IPAdapterPass`` sets IP-Adapter attention processors (with the adapters' key/value weights) and
``unet.encoder_hid_proj`` (the projections) on the UNet when the pass starts and puts the original objects back
when it ends, whatever ends it, holding the UNet's lock meanwhile; before each UNet call it puts the image
embeddings into ``added_cond_kwargs["image_embeds"]`` (the picture's for the positive copies, the "empty" one for
the negative copies, as diffusers does for CFG) and each adapter's scale (the unit's weight, 0 outside its
start/end).
"""
from __future__ import annotations

import contextlib
import threading
import weakref
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from accelerate import init_empty_weights
from diffusers.loaders.unet import UNet2DConditionLoadersMixin
from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0
from diffusers.models.embeddings import ImageProjection, MultiIPAdapterImageProjection

from paragoger.core.denoise import ModelCallState
from paragoger.errors import ModelLoadError

IMAGE_PROJ, ATTENTION = "image_proj.", "ip_adapter."
# cross_attention_dim of the UNet the adapter was made for -> family
FAMILY_BY_CROSS_ATTENTION = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
# the extension's preprocessors that hand the picture to the adapter's image encoder (no map is made)
IMAGE_ENCODER_MODULES = ("ip-adapter_clip_sd15", "ip-adapter_clip_h", "ip-adapter_clip_sdxl_plus_vith",
                         "clip_vision")


def is_ip_adapter(state_dict) -> bool:
    return any(key.startswith(IMAGE_PROJ) for key in state_dict) and any(
        key.startswith(ATTENTION) for key in state_dict)


class IPAdapterWeights(torch.nn.Module):
    """One adapter: ``image_proj`` (diffusers' ImageProjection or IPAdapterPlusImageProjection) and the key/value
    weights of its attention layers, ``attention[str(N)] = (to_k_ip, to_v_ip)``."""

    def __init__(self, image_proj: torch.nn.Module, attention: dict[str, tuple[torch.Tensor, torch.Tensor]]):
        super().__init__()
        self.image_proj = image_proj
        self.keys = torch.nn.ParameterDict({f"{n}_k": torch.nn.Parameter(k, requires_grad=False)
                                            for n, (k, _) in attention.items()})
        self.values = torch.nn.ParameterDict({f"{n}_v": torch.nn.Parameter(v, requires_grad=False)
                                              for n, (_, v) in attention.items()})

    @property
    def plus(self) -> bool:
        """Plus adapters take the encoder's penultimate hidden states, plain ones its projected embedding."""
        return not isinstance(self.image_proj, ImageProjection)

    @property
    def encoder_width(self) -> int:
        """What the image encoder must give: its projection_dim (plain) or its hidden_size (Plus)."""
        plain = isinstance(self.image_proj, ImageProjection)
        layer = self.image_proj.image_embeds if plain else self.image_proj.proj_in
        return int(layer.in_features)

    @property
    def tokens(self) -> int:
        if isinstance(self.image_proj, ImageProjection):
            return self.image_proj.num_image_text_embeds
        return int(self.image_proj.latents.shape[1])

    def attention(self, number: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.keys[f"{number}_k"], self.values[f"{number}_v"]


def family_of(state_dict) -> str:
    """From the text width the layers take; other widths (small test models) by the number of cross-attention
    layers: SD 1.x/2.x have 16, SDXL 70."""
    widths = [value.shape[1] for key, value in state_dict.items() if key.endswith("to_k_ip.weight")]
    return FAMILY_BY_CROSS_ATTENTION.get(int(widths[0])) or ("sdxl" if len(widths) > 16 else "sd1")


def build_ip_adapter(state_dict: dict[str, torch.Tensor], *, device, dtype, name: str) -> IPAdapterWeights:
    """The adapter of a state dict in the file layout above, on ``device`` in ``dtype``."""
    projection = {key[len(IMAGE_PROJ):]: value for key, value in state_dict.items() if key.startswith(IMAGE_PROJ)}
    attention: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        if key.startswith(ATTENTION) and key.endswith(("to_k_ip.weight", "to_v_ip.weight")):
            number, part = key[len(ATTENTION):].split(".", 1)
            attention.setdefault(number, {})[part] = value.to(device=device, dtype=dtype)
    if not projection or not attention or "latents" not in projection and "proj.weight" not in projection:
        raise ModelLoadError("ip_adapter_unsupported", name=name)
    try:
        target = SimpleNamespace(device=torch.device(device), dtype=dtype)   # what the converter reads of "self"
        image_proj = UNet2DConditionLoadersMixin._convert_ip_adapter_image_proj_to_diffusers(
            target, projection, low_cpu_mem_usage=True)
        pairs = {n: (parts["to_k_ip.weight"], parts["to_v_ip.weight"]) for n, parts in attention.items()}
    except (KeyError, IndexError, ValueError, RuntimeError, AttributeError) as error:
        raise ModelLoadError("control_model_corrupt", name=name,
                             reason=f"{type(error).__name__}: {str(error)[:200]}") from None
    return IPAdapterWeights(image_proj.to(device=device, dtype=dtype).eval().requires_grad_(False), pairs)


# --------------------------------------------------------------------------------------------- one pass


@dataclass
class AdapterUnit:
    """One IP-Adapter unit ready for a pass: its adapter, the embeddings of its picture ([1, 1, D] or
    [1, 1, tokens, D]) and of "no picture", its weight and start/end."""

    adapter: IPAdapterWeights
    positive: torch.Tensor
    negative: torch.Tensor
    weight: float
    start: float = 0.0
    end: float = 1.0


class UNetLocks:
    """One lock per UNet: while a pass has adapters set on it, another generation on that UNet waits."""

    def __init__(self):
        self._lock = threading.Lock()
        self._locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def of(self, unet) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(unet, threading.Lock())


class IPAdapterPass:
    """The units' adapters on a UNet for one pass: ``applied(unet)`` is the ModelHooks ``around`` context,
    ``before_call`` the hook that hands the UNet its image embeddings."""

    def __init__(self, units: list[AdapterUnit], locks: UNetLocks):
        self.units, self.locks = units, locks
        self.processors: list[IPAdapterAttnProcessor2_0] = []

    @contextlib.contextmanager
    def applied(self, unet):
        with self.locks.of(unet):
            processors, projection = unet.attn_processors, unet.encoder_hid_proj
            hid_type = unet.config.encoder_hid_dim_type
            try:
                unet.set_attn_processor(self._processors(unet, processors))
                unet.encoder_hid_proj = MultiIPAdapterImageProjection([u.adapter.image_proj for u in self.units])
                unet.config.encoder_hid_dim_type = "ip_image_proj"   # what diffusers' load_ip_adapter sets
                yield
            finally:   # the projection first: a Plus projection's own attention layers count as the UNet's
                unet.encoder_hid_proj = projection
                unet.set_attn_processor(processors)
                unet.config.encoder_hid_dim_type = hid_type
                self.processors = []

    def _processors(self, unet, current: dict) -> dict:
        """diffusers' ``_convert_ip_adapter_attn_to_diffusers`` rule: cross-attention layer k (in processor order,
        self-attention layers counted too) takes the adapters' weights number 2k + 1."""
        made, number = {}, 1
        widths = unet.config.block_out_channels
        for name, processor in current.items():
            if name.endswith("attn1.processor"):
                made[name] = processor
                continue
            if name.startswith("mid_block"):
                hidden = widths[-1]
            else:
                block = int(name.split(".")[1])
                hidden = list(reversed(widths))[block] if name.startswith("up_blocks") else widths[block]
            with init_empty_weights():
                made[name] = IPAdapterAttnProcessor2_0(hidden_size=hidden,
                                                       cross_attention_dim=unet.config.cross_attention_dim,
                                                       scale=[u.weight for u in self.units],
                                                       num_tokens=[u.adapter.tokens for u in self.units])
            weights = {}
            for i, unit in enumerate(self.units):
                key, value = unit.adapter.attention(number)
                weights[f"to_k_ip.{i}.weight"], weights[f"to_v_ip.{i}.weight"] = key, value
            made[name].load_state_dict(weights, assign=True)   # the adapter's own tensors, no copies
            self.processors.append(made[name])
            number += 2
        return made

    def before_call(self, call: ModelCallState) -> None:
        from paragoger.control.guidance import covers   # guidance imports this module
        scales = [unit.weight if covers(call.index, call.count, unit.start, unit.end) else 0.0
                  for unit in self.units]
        for processor in self.processors:
            processor.scale = scales
        per_copy = call.model_input.shape[0] // call.copies
        device, dtype = call.model_input.device, call.model_input.dtype
        embeds = []
        for unit in self.units:
            rows = [unit.negative if copy in call.negative_copies else unit.positive for copy in range(call.copies)
                    for _ in range(per_copy)]
            embeds.append(torch.cat(rows).to(device=device, dtype=dtype))
        added = dict(call.unet_kwargs.get("added_cond_kwargs") or {})
        added["image_embeds"] = embeds
        call.unet_kwargs["added_cond_kwargs"] = added
