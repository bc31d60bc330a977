"""LoRA networks (``<lora:name:te:unet>``): finding the files, reading them, and merging them into the loaded
checkpoint for exactly one generation.

Formats read (safetensors; ``.pt``/``.ckpt`` only through the safe unpickler):

* kohya-ss / A1111 names: ``lora_unet_<module>``, ``lora_te_<module>`` (SD 1.x/2.x), ``lora_te1_``/``lora_te2_``
  (SDXL's two text encoders). UNet modules may be named the diffusers way (``down_blocks_0_attentions_0_...``,
  what kohya writes for SD 1.x/2.x) or the original way (``input_blocks_4_1_...``, ``middle_block_``,
  ``output_blocks_``: what kohya writes for SDXL). Both are looked up in the same table, built from the loaded
  UNet itself (its diffusers module names, and their original names through ``to_ldm.unet_key``).
* diffusers / PEFT names: ``unet.<module>.lora_A.weight``/``lora_B.weight``, ``.lora.down/up.weight``,
  ``.lora_linear_layer.down/up.weight``, attention-processor names (``attn1.processor.to_q_lora.down.weight``);
  ``text_encoder.`` and ``text_encoder_2.`` prefixes. Their alpha comes from ``.alpha`` keys, else from the
  ``lora_adapter_metadata`` header diffusers writes (``lora_alpha`` / ``r``), else the scale is 1.
* Network kinds: LoRA (linear, and convolutional "LoCon" including the CP/Tucker ``lora_mid`` form), LyCORIS
  LoHa (``hada_w1_a`` ..., with ``hada_t1/t2``), LoKr (``lokr_w1``/``lokr_w1_a/b``, ``lokr_w2``/``lokr_w2_a/b``,
  ``lokr_t2``) and full weight differences (``diff``, ``diff_b``). Scale: a ``scale`` key, else alpha/rank, else 1;
  times the te or unet multiplier of the tag. DoRA (weight-decomposed LoRA: LyCORIS/kohya ``dora_scale``, PEFT
  ``lora_magnitude_vector``) on any of these: the changed weight is renormalised to the stored magnitude, per
  input channel (``dora_scale`` shaped ``[1, in, ...]``, LyCORIS's default) or per output channel (``[out, 1,
  ...]`` or PEFT's ``[out]``), and the multiplier moves the weight between the original and that (as ComfyUI
  applies DoRA). Not supported (keys reported, never applied): IA3, OFT/BOFT, GLoRA, LyCORIS norm layers,
  per-module LoRA biases.

How a LoRA is applied: its weight difference is added into the modules' weights in place, and the exact original
tensor of every weight it changes is copied away first (to the CPU, so no GPU memory is held for it) and copied
back on leaving the ``apply`` block, whatever ends it (return, exception, KeyboardInterrupt). The modules are
then bit-identical to before, the same Parameter objects holding the same values. Merging costs one pass over
the changed weights per generation and nothing per sampling step (the way A1111 applies LoRAs by default);
PEFT adapters would add work to every step, a dependency, and cover neither LoHa nor LoKr. While a LoRA is
applied, other users of the same modules (another generation on another thread) would see it: ``apply`` holds
a per-model lock for its whole duration, so generations that use LoRAs on one model take turns.

Motion LoRAs (AnimateDiff's ``v2_lora_ZoomIn.ckpt`` and the like) live in the same folders and are named by the
same tags, but they change a motion module, not the checkpoint (keys ``down_blocks.0.motion_modules.0...
attention_blocks.0.processor.to_q_lora.down.weight``). They are told apart by their keys (``kind`` "motion": from
the safetensors header when listed, from the tensors once a ``.ckpt`` has been read), are not offered for a
model family (``compatible``), and ``apply`` skips them: an image generation naming one is made as if it were
not there. ``paragoger.video.motion_lora`` applies them to a motion module.

Facts from A1111 kept here: a LoRA's name is its file stem; ``ss_output_name`` in the safetensors header is its
alias (also accepted in tags); the hash is the header's ``sshs_model_hash`` if present, else for safetensors
the "addnet" hash (sha256 of the bytes after the header), else the file's sha256; the infotext shows its first
12 hex digits as ``Lora hashes: "name: 0123456789ab, other: ..."`` with ``:`` and ``,`` removed from names.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import torch

from paragoger.errors import ModelLoadError, UserError
from paragoger.model_manager import to_ldm
from paragoger.model_manager.hashing import HashCache
from paragoger.model_manager.memory import ModelManager
from paragoger.model_manager.safe_pickle import load_ckpt
from paragoger.model_manager.safetensors_file import SafetensorsReadError, data_start, read_header, read_tensors
from paragoger.model_manager.scanner import files_with_suffixes, preview_beside

log = logging.getLogger(__name__)

LORA_SUFFIXES = (".safetensors", ".pt", ".ckpt")
LORA_HASH_LENGTH = 12
LORA_KIND = "lora"
FAMILIES = ("sd1", "sd2", "sdxl")
FAMILY_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}

# Which model a key prefix addresses: kohya names, then diffusers/PEFT names.
_KOHYA_PREFIXES = (("lora_unet_", "unet"), ("lora_te1_", "text_encoder"), ("lora_te2_", "text_encoder_2"),
                   ("lora_te_", "text_encoder"))
_DIFFUSERS_PREFIXES = (("unet.", "unet"), ("text_encoder_2.", "text_encoder_2"), ("text_encoder.", "text_encoder"),
                       ("base_model.model.", "unet"))
# Suffixes of diffusers/PEFT keys -> the part they are (longest first where one ends another).
_DIFFUSERS_PARTS = ((".lora_linear_layer.down.weight", "down"), (".lora_linear_layer.up.weight", "up"),
                    (".lora.down.weight", "down"), (".lora.up.weight", "up"),
                    (".lora_A.weight", "down"), (".lora_B.weight", "up"),
                    (".lora_down.weight", "down"), (".lora_up.weight", "up"), (".lora_mid.weight", "mid"),
                    (".lora_magnitude_vector.weight", "dora_scale"), (".lora_magnitude_vector", "dora_scale"),
                    (".alpha", "alpha"))
_PROCESSOR = re.compile(r"^(.*)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$")
# kohya part names -> ours.
_KOHYA_PARTS = {"lora_down.weight": "down", "lora_up.weight": "up", "lora_mid.weight": "mid", "alpha": "alpha",
                "scale": "scale"}
_LOHA_PARTS = {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2"}
_LOKR_PARTS = {"lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2"}
_FULL_PARTS = {"diff", "diff_b"}
_KNOWN_PARTS = {"down", "up", "mid", "alpha", "scale", "dora_scale"} | _LOHA_PARTS | _LOKR_PARTS | _FULL_PARTS
# A motion LoRA's key (see the module notes).
_MOTION_LORA_KEY = re.compile(r"\.motion_modules\.\d+\..*\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$")
# Cross-attention context widths and text encoder widths of the real models.
_CONTEXT_WIDTH = {768: "sd1", 1024: "sd2", 2048: "sdxl"}


# ------------------------------------------------------------------------------------------------ files on disk


@dataclass(frozen=True)
class LoraInfo:
    """A LoRA file as the Lora tab lists it.

    ``name``: the file stem, what ``<lora:name:1>`` uses; ``alias``: ``ss_output_name`` from the header (or the
    name); ``relative``: path within its folder; ``families``: the models it may be for (all three when the file
    does not tell); ``preview``: ``<stem>.png`` / ``<stem>.preview.png`` (or jpg/webp) beside it;
    ``user_metadata``: ``<stem>.json`` beside it (A1111's per-network notes), if any. ``kind``: "image", or
    "motion" for a LoRA made for an AnimateDiff motion module (see the module notes).
    """

    name: str
    path: Path
    relative: str
    alias: str
    metadata: dict = field(default_factory=dict, compare=False, hash=False, repr=False)
    families: tuple[str, ...] = FAMILIES
    preview: Path | None = None
    user_metadata: dict = field(default_factory=dict, compare=False, hash=False, repr=False)
    kind: str = "image"

    @property
    def is_safetensors(self) -> bool:
        return self.path.suffix.lower() == ".safetensors"

    @property
    def base_model_version(self) -> str | None:
        return self.metadata.get("ss_base_model_version")

    @property
    def sd_model_name(self) -> str | None:
        return self.metadata.get("ss_sd_model_name")


class LoraCall(NamedTuple):
    """One LoRA to apply: ``te`` and ``unet`` multipliers; ``mentioned_name`` is the name as the prompt wrote it
    (the name or the alias: what ``Lora hashes`` shows); ``short_hash`` fills the infotext field."""

    info: LoraInfo
    te: float
    unet: float
    mentioned_name: str | None = None
    short_hash: str | None = None


@dataclass
class AppliedLora:
    """What applying one LoRA did. ``modules``: layers changed; ``unmatched_keys``: keys naming no layer of the
    loaded model; ``unsupported_keys``: keys of kinds this app cannot apply (IA3, OFT...);
    ``mismatched``: layers whose shape did not fit (skipped). ``layers``: layers in the file; ``found``: those
    naming a layer of the model; ``planned``: those with a non-zero multiplier."""

    call: LoraCall
    layers: int = 0
    found: int = 0
    planned: int = 0
    modules: int = 0
    keys_used: int = 0
    unmatched_keys: list[str] = field(default_factory=list)
    unsupported_keys: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def info(self) -> LoraInfo:
        return self.call.info

    @property
    def mentioned_name(self) -> str:
        return self.call.mentioned_name or self.call.info.name


def addnet_hash(path: Path) -> str:
    """The "addnet" sha256 kohya and A1111 use for safetensors LoRAs: the tensor bytes after the header only, so
    editing the metadata does not change it."""
    digest = hashlib.sha256()
    start = data_start(path)
    with open(path, "rb") as stream:
        stream.seek(start)
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def is_motion_lora(keys: Iterable[str]) -> bool:
    """Whether a LoRA file's keys are those of a motion LoRA (made for an AnimateDiff motion module)."""
    return any(_MOTION_LORA_KEY.search(key) for key in keys)


def families_of(shapes: dict[str, tuple[int, ...]], metadata: dict[str, str]) -> tuple[str, ...]:
    """The model families a LoRA may be for (all three when nothing tells).

    The tensors speak first (SDXL's ``te1``/``te2`` names; the text context width a cross-attention key layer
    reads: 768, 1024, 2048), then the training header (``ss_base_model_version``, ``ss_v2``,
    ``modelspec.architecture``), then weaker hints (kohya's ``lora_te_`` is never SDXL).
    """
    keys = list(shapes)
    if any(k.startswith(("lora_te1_", "lora_te2_", "text_encoder_2.")) for k in keys):
        return ("sdxl",)
    for key, shape in shapes.items():
        if "attn2" in key and "to_k" in key and len(shape) >= 2 and shape[1] in _CONTEXT_WIDTH \
                and key.endswith(("lora_down.weight", "lora_A.weight", ".down.weight", "hada_w1_b")):
            return (_CONTEXT_WIDTH[shape[1]],)
    version = str(metadata.get("ss_base_model_version", ""))
    architecture = str(metadata.get("modelspec.architecture", ""))
    if version.startswith("sdxl") or architecture.startswith("stable-diffusion-xl"):
        return ("sdxl",)
    if str(metadata.get("ss_v2", "")) == "True" or version.startswith("sd_v2") \
            or architecture.startswith("stable-diffusion-v2"):
        return ("sd2",)
    if version.startswith("sd_v1") or architecture.startswith("stable-diffusion-v1"):
        return ("sd1",)
    if any(k.startswith("lora_te_") for k in keys):
        return ("sd1", "sd2")  # kohya names SDXL's encoders te1/te2, never te
    if str(metadata.get("ss_v2", "")) == "False":
        return ("sd1",)  # kohya writes ss_v2 into every SD 1/2 LoRA; SDXL ones were caught above
    return FAMILIES


def _user_metadata_beside(path: Path) -> dict:
    candidate = path.with_suffix(".json")
    if not candidate.is_file():
        return {}
    try:
        loaded = json.loads(candidate.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _sort_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


# ------------------------------------------------------------------------------------------------ reading a file


@dataclass
class LoraFile:
    """A LoRA's tensors grouped by layer: ``groups[(model, layer key)] = {part: tensor}``, where model is
    ``unet``/``text_encoder``/``text_encoder_2`` and the layer key is the module path with ``_`` for ``.``."""

    groups: dict[tuple[str, str], dict[str, torch.Tensor]]
    group_keys: dict[tuple[str, str], list[str]]
    unknown_keys: list[str]
    metadata: dict[str, str]
    families: tuple[str, ...]
    nbytes: int
    kind: str = "image"
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # a motion LoRA's own tensors, by key


def _read_lora_file(path: Path, name: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the header metadata of a LoRA file (``.pt``/``.ckpt`` through the safe unpickler), in the
    process's own memory (never views of a mapped file, which could change or vanish under the cache)."""
    if path.suffix.lower() == ".safetensors":
        try:
            return read_tensors(path)
        except SafetensorsReadError as error:
            raise UserError("lora_unreadable", name=name, reason=str(error)) from None
    try:
        obj = load_ckpt(path, display_name=name)
    except ModelLoadError as error:
        if error.key == "pickle_refused":
            raise UserError("network_pickle_refused", name=name, what=error.params.get("what", "?")) from None
        raise UserError("lora_unreadable", name=name, reason=error.params.get("reason", str(error))) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise UserError("lora_unreadable", name=name, reason="no tensors in the file")
    return {k: v.clone() for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}, {}


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _split_key(key: str) -> tuple[str, str, str] | None:
    """``(model, layer key, part)`` of one LoRA key, or None when the key is not one this app knows."""
    for prefix, model in _KOHYA_PREFIXES:
        if key.startswith(prefix):
            layer, _, part = key[len(prefix):].partition(".")
            part = _KOHYA_PARTS.get(part, part)
            return model, layer, part
    for prefix, model in _DIFFUSERS_PREFIXES:
        if key.startswith(prefix):
            rest = key[len(prefix):]
            if match := _PROCESSOR.match(rest):
                layer = f"{match[1]}.{match[2]}" + (".0" if match[2] == "to_out" else "")
                return model, _layer_key(model, layer), match[3]
            for suffix, part in _DIFFUSERS_PARTS:
                if rest.endswith(suffix):
                    return model, _layer_key(model, rest[: -len(suffix)]), part
            return None
    return None


def _layer_key(model: str, module_path: str) -> str:
    """The lookup key of a module path: ``_`` for ``.``; text encoder paths always under ``text_model.`` (the
    transformers 5 CLIPTextModel has no ``text_model`` level, files written with earlier versions do)."""
    if model != "unet" and not module_path.startswith(("text_model.", "text_projection")):
        module_path = "text_model." + module_path
    return module_path.replace(".", "_")


def _alpha_from_diffusers_metadata(metadata: dict[str, str]) -> dict[str, float]:
    """``{model: lora_alpha / r}`` from the ``lora_adapter_metadata`` header diffusers writes (plain configs only)."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return {}
    try:
        configs = json.loads(raw)
    except ValueError:
        return {}
    scales = {}
    for model, config in (configs.items() if isinstance(configs, dict) else ()):
        if isinstance(config, dict) and config.get("r") and config.get("lora_alpha") is not None \
                and not config.get("rank_pattern") and not config.get("alpha_pattern"):
            scales[model] = float(config["lora_alpha"]) / float(config["r"])
    return scales


def parse_lora(state_dict: dict[str, torch.Tensor], metadata: dict[str, str]) -> LoraFile:
    nbytes = sum(t.numel() * t.element_size() for t in state_dict.values())
    if is_motion_lora(state_dict):
        return LoraFile({}, {}, [], metadata, FAMILIES, nbytes, kind="motion", tensors=dict(state_dict))
    groups: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    group_keys: dict[tuple[str, str], list[str]] = {}
    unknown = []
    for key, tensor in state_dict.items():
        split = _split_key(key)
        if split is None:
            unknown.append(key)
            continue
        model, layer, part = split
        groups.setdefault((model, layer), {})[part] = tensor
        group_keys.setdefault((model, layer), []).append(key)
    diffusers_scales = _alpha_from_diffusers_metadata(metadata)
    for (model, _), parts in groups.items():
        if model in diffusers_scales and "alpha" not in parts and "scale" not in parts:
            parts["scale"] = torch.tensor(diffusers_scales[model])
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    return LoraFile(groups, group_keys, unknown, metadata, families_of(shapes, metadata), nbytes)


# ------------------------------------------------------------------------------------------------ the math


class _Skip(Exception):
    """A layer that cannot take this LoRA's difference (``reason``: unsupported or mismatched)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _cp_weight(core: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rebuild a CP/Tucker-decomposed convolution: ``core`` (r, r, kh, kw), ``a`` (r, out), ``b`` (r, in)."""
    return torch.einsum("ijkl,jr,ip->prkl", core, b, a)


def _lora_delta(parts: dict[str, torch.Tensor], shape: torch.Size) -> tuple[torch.Tensor, int]:
    down, up = parts["down"], parts["up"]
    rank = down.shape[0]
    if "mid" in parts:  # LoCon with CP decomposition: 1x1 down, kxk mid, 1x1 up
        delta = torch.einsum("oa,abkl,bi->oikl", up.flatten(1), parts["mid"], down.flatten(1))
    elif up.ndim == 4 or down.ndim == 4:
        delta = up.flatten(1) @ down.flatten(1)
        if down.ndim == 4:
            delta = delta.reshape(up.shape[0], *down.shape[1:])
    else:
        delta = up @ down
    return delta, rank


def _loha_delta(parts: dict[str, torch.Tensor], shape: torch.Size) -> tuple[torch.Tensor, int]:
    w1a, w1b, w2a, w2b = (parts[k] for k in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"))
    if "hada_t1" in parts and "hada_t2" in parts:
        w1 = _cp_weight(parts["hada_t1"], w1a, w1b)
        w2 = _cp_weight(parts["hada_t2"], w2a, w2b)
    else:
        w1, w2 = w1a @ w1b, w2a @ w2b
    return w1 * w2, w1b.shape[0]


def _lokr_delta(parts: dict[str, torch.Tensor], shape: torch.Size) -> tuple[torch.Tensor, int | None]:
    rank = None
    if "lokr_w1" in parts:
        w1 = parts["lokr_w1"]
    else:
        w1, rank = parts["lokr_w1_a"] @ parts["lokr_w1_b"], parts["lokr_w1_b"].shape[0]
    if "lokr_w2" in parts:
        w2 = parts["lokr_w2"]
    elif "lokr_t2" in parts:
        w2, rank = _cp_weight(parts["lokr_t2"], parts["lokr_w2_a"], parts["lokr_w2_b"]), parts["lokr_w2_b"].shape[0]
    else:
        w2, rank = parts["lokr_w2_a"] @ parts["lokr_w2_b"], parts["lokr_w2_b"].shape[0]
    if w2.ndim == 4 and w1.ndim == 2:
        w1 = w1[:, :, None, None]
    return torch.kron(w1, w2), rank


def layer_delta(parts: dict[str, torch.Tensor], weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The (weight, bias) difference one LoRA layer makes at multiplier 1, in float32 on the weight's device.

    Raises ``_Skip`` for a layer kind this app does not apply or a shape that does not fit ``weight``.
    """
    unsupported = set(parts) - _KNOWN_PARTS
    if unsupported:
        raise _Skip("unsupported")
    device = weight.device
    parts = {k: v.to(device=device, dtype=torch.float32) for k, v in parts.items()}
    bias = None
    if "down" in parts and "up" in parts:
        delta, rank = _lora_delta(parts, weight.shape)
    elif _LOHA_PARTS - {"hada_t1", "hada_t2"} <= set(parts):
        delta, rank = _loha_delta(parts, weight.shape)
    elif ("lokr_w1" in parts or {"lokr_w1_a", "lokr_w1_b"} <= set(parts)) and \
            ("lokr_w2" in parts or {"lokr_w2_a", "lokr_w2_b"} <= set(parts)):
        delta, rank = _lokr_delta(parts, weight.shape)
    elif "diff" in parts:
        delta, rank = parts["diff"], None
        bias = parts.get("diff_b")
    else:
        raise _Skip("unsupported")
    if delta.numel() != weight.numel():
        raise _Skip("mismatched")
    delta = delta.reshape(weight.shape)
    if "scale" in parts:
        scale = float(parts["scale"])
    elif "alpha" in parts and rank:
        scale = float(parts["alpha"]) / rank
    else:
        scale = 1.0
    delta = delta * scale
    if "dora_scale" in parts:
        delta = _dora_delta(weight.to(torch.float32), delta, parts["dora_scale"])
    return delta, bias


def _dora_delta(weight: torch.Tensor, delta: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """DoRA: ``weight + delta`` rescaled so that each input (or output) channel has the stored ``magnitude``;
    returned as the difference from ``weight``."""
    merged = weight + delta
    out_features, in_features = weight.shape[0], weight.shape[1]
    if magnitude.ndim == 1 or (magnitude.shape[0] == out_features and magnitude.numel() == out_features):
        norm = merged.reshape(out_features, -1).norm(dim=1)                 # one per output channel
        shape = (out_features,) + (1,) * (weight.ndim - 1)
    elif magnitude.shape[0] == 1 and magnitude.numel() == in_features:
        norm = merged.transpose(0, 1).reshape(in_features, -1).norm(dim=1)  # one per input channel
        shape = (1, in_features) + (1,) * (weight.ndim - 2)
    else:
        raise _Skip("mismatched")
    if magnitude.numel() != norm.numel():
        raise _Skip("mismatched")
    return merged * (magnitude.reshape(shape) / norm.reshape(shape).clamp_min(1e-12)) - weight


# ------------------------------------------------------------------------------------------------ the library


class LoraLibrary:
    """The LoRA files in ``dirs`` (searched recursively; earlier folders win on equal names), their hashes, and
    a small in-memory cache of read files so the next generation with the same LoRA does not read it again.

    ``cache_size``: files kept in memory (most recently used first), held by the model manager (kind "lora") and
    let go sooner when the RAM budget needs the room.
    """

    def __init__(self, dirs: Iterable[Path], hash_cache: HashCache, *, cache_size: int = 3,
                 manager: ModelManager | None = None):
        self.dirs = tuple(Path(d) for d in dirs)
        self.hash_cache = hash_cache
        self._addnet = HashCache(hash_cache.cache_file, section="paragoger-addnet-sha256", digest=addnet_hash)
        self.cache_size = max(0, int(cache_size))
        self.manager = manager if manager is not None else ModelManager("cpu")
        self.manager.limits[LORA_KIND] = max(1, self.cache_size)
        self._entries: dict[str, LoraInfo] = {}
        self._aliases: dict[str, LoraInfo] = {}
        self._lock = threading.Lock()
        self._model_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._tables: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.file_reads = 0
        self.refresh()

    # -------------------------------------------------------------------------------------------- listing

    def refresh(self) -> list[LoraInfo]:
        found: dict[str, LoraInfo] = {}
        for folder, path in files_with_suffixes(self.dirs, LORA_SUFFIXES):
            info = self._describe(path, folder)
            if info.name in found:
                log.warning("LoRA %s: another file with this name was found first (%s); ignoring it",
                            path, found[info.name].path)
                continue
            found[info.name] = info
        aliases: dict[str, LoraInfo] = {}
        duplicated = set()
        for info in found.values():
            if info.alias != info.name:
                if info.alias in aliases or info.alias in found:
                    duplicated.add(info.alias)
                aliases[info.alias] = info
        for alias in duplicated:  # an alias two files share (or that is another file's name) is no alias
            aliases.pop(alias, None)
        with self._lock:
            self._entries = dict(sorted(found.items(), key=lambda item: _sort_key(item[0])))
            self._aliases = aliases
        return self.entries()

    def _describe(self, path: Path, folder: Path) -> LoraInfo:
        metadata: dict[str, str] = {}
        shapes: dict[str, tuple[int, ...]] = {}
        if path.suffix.lower() == ".safetensors":
            try:
                header = read_header(path)
                shapes, metadata = header.shapes, dict(header.metadata)
            except SafetensorsReadError as error:
                log.warning("LoRA %s: unreadable header (%s)", path, error)
        metadata.pop("ssmd_cover_images", None)  # cover images: too big to keep or show as text
        families = families_of(shapes, metadata) if (shapes or metadata) else FAMILIES
        return LoraInfo(name=path.stem, path=path, relative=path.relative_to(folder).as_posix(),
                        alias=metadata.get("ss_output_name") or path.stem, metadata=metadata,
                        families=families, preview=preview_beside(path), user_metadata=_user_metadata_beside(path),
                        kind="motion" if is_motion_lora(shapes) else "image")

    def entries(self) -> list[LoraInfo]:
        with self._lock:
            return list(self._entries.values())

    def find(self, name: str) -> LoraInfo | None:
        """The LoRA a tag names: by file stem, else by alias (``ss_output_name``), as A1111 looks them up."""
        with self._lock:
            return self._entries.get(name) or self._aliases.get(name)

    def compatible(self, family: str) -> list[LoraInfo]:
        """Image LoRAs usable with a checkpoint of ``family`` (motion LoRAs are not)."""
        return [info for info in self.entries() if family in info.families and info.kind != "motion"]

    # -------------------------------------------------------------------------------------------- hashes

    def sha256(self, info: LoraInfo) -> str:
        """The hash A1111 shows for a LoRA (full length): header's ``sshs_model_hash``, else addnet hash for
        safetensors, else the file's sha256."""
        from_header = info.metadata.get("sshs_model_hash")
        if from_header:
            return from_header
        if info.is_safetensors:
            return self._addnet.sha256(info.path)
        return self.hash_cache.sha256(info.path)

    def short_hash(self, info: LoraInfo) -> str:
        return self.sha256(info)[:LORA_HASH_LENGTH]

    # -------------------------------------------------------------------------------------------- tags

    def resolve(self, calls, *, with_hashes: bool = True) -> tuple[list[LoraCall], list[str]]:
        """``(loras to apply, names not found)`` for the ``lora`` tags of a prompt.

        ``calls``: ``ExtraNetworkCall`` items from ``extract_extra_networks`` (other kinds are ignored).
        Raises UserError for a weight that is not a number.
        """
        from paragoger.prompts.extra_networks import lora_name, lora_weights

        found, missing = [], []
        for call in calls:
            if call.kind != "lora":
                continue
            name = lora_name(call)
            try:
                te, unet = lora_weights(call)
            except ValueError:
                raise UserError("lora_bad_weight", name=name, tag=":".join([call.kind, *call.args])) from None
            info = self.find(name)
            if info is None:
                missing.append(name)
                continue
            found.append(LoraCall(info, te, unet, name, self.short_hash(info) if with_hashes else None))
        return found, missing

    # -------------------------------------------------------------------------------------------- reading

    def load(self, info: LoraInfo) -> LoraFile:
        """The parsed file, from memory when this version of it (same size and modification time) was read."""
        try:
            stat = os.stat(info.path)
        except OSError as error:
            raise UserError("lora_unreadable", name=info.name, reason=_first_line(error)) from None
        key = (str(Path(info.path).resolve()), stat.st_size, stat.st_mtime_ns)
        if not self.cache_size:
            return self._read(info)
        return self.manager.load(LORA_KIND, key, lambda: self._read(info), name=info.name, device="cpu",
                                 expected_bytes=stat.st_size)

    def _read(self, info: LoraInfo) -> LoraFile:
        state_dict, metadata = _read_lora_file(Path(info.path), info.name)
        parsed = parse_lora(state_dict, metadata or dict(info.metadata))
        with self._lock:
            self.file_reads += 1
            if parsed.kind != info.kind and self._entries.get(info.name) == info:  # a .ckpt: known once read
                self._entries[info.name] = replace(info, kind=parsed.kind)
        return parsed

    def clear_cache(self) -> None:
        self.manager.unload_where(LORA_KIND)

    # -------------------------------------------------------------------------------------------- applying

    def _model_lock(self, components) -> threading.RLock:
        with self._lock:
            lock = self._model_locks.get(components.unet)
            if lock is None:
                lock = self._model_locks[components.unet] = threading.RLock()
            return lock

    def _layer_table(self, components) -> dict[str, dict[str, tuple[str, torch.nn.Module]]]:
        """``{model: {layer key: (module path, module)}}`` for the loaded checkpoint (built once per model)."""
        with self._lock:
            cached = self._tables.get(components.unet)
            if cached is not None and cached[0] is components.text_encoder:
                return cached[1]
        table = build_layer_table(components)
        with self._lock:
            self._tables[components.unet] = (components.text_encoder, table)
        return table

    @contextlib.contextmanager
    def apply(self, components, calls) -> Iterator[list[AppliedLora]]:
        """Merge ``calls`` into ``components`` for the duration of the ``with`` block; yields what was applied.

        ``calls``: ``LoraCall`` items or ``(LoraInfo, te, unet)`` tuples. Everything is checked and read before
        any weight changes; a LoRA made for another model family raises UserError("lora_wrong_architecture"),
        one none of whose layers fits raises UserError("lora_nothing_matched"). On leaving the block, however
        it is left, every changed weight gets its exact original values back.
        """
        calls = [call if isinstance(call, LoraCall) else LoraCall(*call) for call in calls]
        if not calls:
            yield []
            return
        with self._model_lock(components):
            plan, applied = self._plan(components, calls)
            backups: list[tuple[torch.Tensor, torch.Tensor]] = []
            try:
                self._merge(plan, applied, backups)
                for item in applied:
                    if item.modules == 0 and (item.planned or not item.found):
                        raise UserError("lora_nothing_matched", name=item.info.name, count=item.layers,
                                        model_family=FAMILY_NAMES.get(components.family, components.family))
                    if item.unmatched_keys or item.unsupported_keys or item.mismatched:
                        log.warning("LoRA %s: %d layers applied; %d keys name no layer of this model, %d keys are of "
                                    "an unsupported kind, %d layers did not fit", item.info.name, item.modules,
                                    len(item.unmatched_keys), len(item.unsupported_keys), len(item.mismatched))
                yield applied
            finally:
                _restore(backups)

    def _plan(self, components, calls: list[LoraCall]):
        """``{(model, module path): (module, [(parts, multiplier, AppliedLora, keys)])}``: every file read and
        every family checked before a weight is touched."""
        table = self._layer_table(components)
        plan: dict[tuple[str, str], tuple[torch.nn.Module, list]] = {}
        applied = []
        for call in calls:
            lora = self.load(call.info)
            if lora.kind == "motion":
                log.info("LoRA %s is a motion LoRA: it has no effect on a picture", call.info.name)
                continue
            if components.family not in lora.families:
                raise UserError("lora_wrong_architecture", name=call.info.name,
                                lora_family=" / ".join(FAMILY_NAMES.get(f, f) for f in lora.families),
                                model_family=FAMILY_NAMES.get(components.family, components.family))
            item = AppliedLora(call, layers=len(lora.groups), unmatched_keys=list(lora.unknown_keys))
            applied.append(item)
            for (model, layer), parts in lora.groups.items():
                keys = lora.group_keys[(model, layer)]
                multiplier = call.unet if model == "unet" else call.te
                found = table.get(model, {}).get(layer)
                if found is None:
                    item.unmatched_keys.extend(keys)
                    continue
                item.found += 1
                if multiplier == 0:
                    continue
                item.planned += 1
                path, module = found
                plan.setdefault((model, path), (module, []))[1].append((parts, multiplier, item, keys))
        return plan, applied

    @staticmethod
    def _merge(plan, applied, backups) -> None:
        with torch.inference_mode():
            for (model, path), (module, contributions) in plan.items():
                weight = module.weight
                bias = getattr(module, "bias", None)
                weight_delta = None
                bias_delta = None
                for parts, multiplier, item, keys in contributions:
                    try:
                        delta, delta_bias = layer_delta(parts, weight)
                    except _Skip as skip:
                        if skip.reason == "unsupported":
                            item.unsupported_keys.extend(keys)
                        else:
                            item.mismatched.append(f"{model}.{path}")
                        continue
                    except RuntimeError:  # shapes that do not multiply: made for another layer size
                        item.mismatched.append(f"{model}.{path}")
                        continue
                    if delta_bias is not None and (bias is None or delta_bias.numel() != bias.numel()):
                        item.mismatched.append(f"{model}.{path}")
                        continue
                    weight_delta = delta * multiplier if weight_delta is None else weight_delta + delta * multiplier
                    if delta_bias is not None:
                        delta_bias = delta_bias.reshape(bias.shape) * multiplier
                        bias_delta = delta_bias if bias_delta is None else bias_delta + delta_bias
                    item.modules += 1
                    item.keys_used += len(keys)
                if weight_delta is not None:
                    _merge_into(weight, weight_delta, backups)
                if bias_delta is not None:
                    _merge_into(bias, bias_delta, backups)


def _merge_into(tensor: torch.Tensor, delta: torch.Tensor, backups: list) -> None:
    """``tensor += delta`` in place (in float32, rounded once to the tensor's dtype), after saving its exact
    values. The backup is registered before the tensor changes, so a failure halfway is still restored."""
    backups.append((tensor, tensor.detach().to("cpu", copy=True)))
    tensor.copy_(tensor.float() + delta)


def _restore(backups: list) -> None:
    with torch.inference_mode():
        for tensor, saved in reversed(backups):
            tensor.copy_(saved)
    backups.clear()


def build_layer_table(components) -> dict[str, dict[str, tuple[str, torch.nn.Module]]]:
    """Every module with a weight, under the keys LoRA files use for it (see the module docstring)."""
    table: dict[str, dict[str, tuple[str, torch.nn.Module]]] = {"unet": {}, "text_encoder": {}, "text_encoder_2": {}}
    unet_config = dict(components.unet.config)
    for path, module in components.unet.named_modules():
        if not isinstance(getattr(module, "weight", None), torch.Tensor):
            continue
        table["unet"][path.replace(".", "_")] = (path, module)
        try:
            original = to_ldm.unet_key(path + ".weight", unet_config)
        except (IndexError, KeyError, ValueError):
            continue
        table["unet"].setdefault(original.removesuffix(".weight").replace(".", "_"), (path, module))
    for model in ("text_encoder", "text_encoder_2"):
        encoder = getattr(components, model, None)
        if encoder is None:
            continue
        for path, module in encoder.named_modules():
            if isinstance(getattr(module, "weight", None), torch.Tensor):
                table[model][_layer_key(model, path)] = (path, module)
    return table


def apply_loras(components, calls, library: LoraLibrary):
    """``library.apply(components, calls)``: a context manager; see ``LoraLibrary.apply``."""
    return library.apply(components, calls)


def lora_hashes_field(applied) -> str:
    """The infotext's ``Lora hashes`` value: ``"name1: 0123456789ab, name2: ..."`` (A1111's format).

    ``applied``: ``AppliedLora`` or ``LoraCall`` items with a hash; the name is the one the prompt used, with
    ``:`` and ``,`` removed; a name used twice is listed once; items without a hash are left out.
    """
    found: dict[str, str] = {}
    for item in applied:
        call = item.call if isinstance(item, AppliedLora) else item
        if not call.short_hash:
            continue
        name = (call.mentioned_name or call.info.name).replace(":", "").replace(",", "")
        if name:
            found[name] = call.short_hash
    return ", ".join(f"{name}: {short}" for name, short in found.items())
