"""Tiny LoRA and textual-inversion files for the tiny fixture models (``fixtures.tiny_model``), written the ways
real files are: kohya-ss names and headers, diffusers/PEFT names, LyCORIS LoHa/LoKr, A1111 ``.pt`` embeddings,
``.safetensors`` and diffusers ``.bin`` embeddings. Same arguments -> same bytes.

The layers a kohya LoRA targets are the real ones: in the UNet every Linear and 1x1 Conv2d inside the attention
(Transformer2DModel) blocks, and, with ``conv=True`` (LoCon), the Conv2d layers of the ResNet blocks and the
down/up samplers; in the text encoders every Linear of the attention and MLP blocks. Names are kohya's: diffusers
module paths for SD 1.x/2.x UNets, original (``input_blocks_4_1_...``) paths for SDXL UNets, ``lora_te_`` /
``lora_te1_`` / ``lora_te2_`` for the text encoders.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from paragoger.model_manager import to_ldm
from paragoger.model_manager.fixtures import tiny_model

_UNET_ATTENTION_LINEARS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out")
_TEXT_LINEARS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def _is_attention_layer(path: str, module: torch.nn.Module) -> bool:
    if ".attentions." not in f".{path}" or not isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
        return False
    if isinstance(module, torch.nn.Conv2d) and module.kernel_size != (1, 1):
        return False
    return path.endswith(_UNET_ATTENTION_LINEARS)


def _is_conv_layer(path: str, module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.Conv2d) and (".resnets." in path or ".downsamplers." in path
                                                    or ".upsamplers." in path)


def lora_targets(kind: str = "sd1", *, seed: int = 0, conv: bool = True, text_encoder: bool = True, model=None):
    """``[(model name, module path, module)]`` a kohya LoRA (LoCon with ``conv``) trains, in a fixed order."""
    model = model or tiny_model(kind, seed)
    found = []
    for path, module in model.unet.named_modules():
        if _is_attention_layer(path, module) or (conv and _is_conv_layer(path, module)):
            found.append(("unet", path, module))
    if text_encoder:
        for name in ("text_encoder", "text_encoder_2"):
            encoder = getattr(model, name)
            if encoder is None:
                continue
            for path, module in encoder.named_modules():
                if isinstance(module, torch.nn.Linear) and path.endswith(_TEXT_LINEARS):
                    found.append((name, path, module))
    return model, found


def kohya_name(kind: str, model_name: str, path: str, unet_config: dict) -> str:
    """The kohya key prefix of one layer: ``lora_unet_...``, ``lora_te_...``, ``lora_te1_...``, ``lora_te2_...``."""
    family = kind.split("-")[0]
    if model_name == "unet":
        if family == "sdxl":  # kohya names SDXL UNet layers by their original (LDM) paths
            path = to_ldm.unet_key(path + ".weight", unet_config).removesuffix(".weight")
        return "lora_unet_" + path.replace(".", "_")
    if not path.startswith("text_model."):
        path = "text_model." + path  # transformers 5 has no text_model level in CLIPTextModel; files do
    prefix = {"text_encoder": "lora_te1_" if family == "sdxl" else "lora_te_", "text_encoder_2": "lora_te2_"}
    return prefix[model_name] + path.replace(".", "_")


def _lora_pair(module: torch.nn.Module, rank: int, generator: torch.Generator):
    weight = module.weight
    fan_in = weight[0].numel()
    if weight.ndim == 4:
        out_channels, in_channels, kh, kw = weight.shape
        down = torch.randn(rank, in_channels, kh, kw, generator=generator) / math.sqrt(fan_in)
        up = torch.randn(out_channels, rank, 1, 1, generator=generator) / math.sqrt(rank)
    else:
        down = torch.randn(rank, weight.shape[1], generator=generator) / math.sqrt(fan_in)
        up = torch.randn(weight.shape[0], rank, generator=generator) / math.sqrt(rank)
    return down, up


def kohya_lora_state_dict(kind: str = "sd1", *, seed: int = 0, rank: int = 4, alpha: float = 2.0, conv: bool = True,
                          text_encoder: bool = True, lora_seed: int = 1) -> dict[str, torch.Tensor]:
    """A kohya LoRA (LoCon with ``conv``) for the tiny model of ``kind``/``seed``, weights drawn from ``lora_seed``."""
    model, targets = lora_targets(kind, seed=seed, conv=conv, text_encoder=text_encoder)
    generator = torch.Generator().manual_seed(lora_seed)
    unet_config = dict(model.unet.config)
    state = {}
    for model_name, path, module in targets:
        name = kohya_name(kind, model_name, path, unet_config)
        down, up = _lora_pair(module, rank, generator)
        state[f"{name}.lora_down.weight"] = down.contiguous()
        state[f"{name}.lora_up.weight"] = up.contiguous()
        state[f"{name}.alpha"] = torch.tensor(float(alpha))
    return state


def kohya_metadata(kind: str, *, rank: int, alpha: float, conv: bool, output_name: str | None = None,
                   extra: dict | None = None) -> dict[str, str]:
    """A kohya-ss training header (the keys A1111 reads, and a few it shows)."""
    family = kind.split("-")[0]
    metadata = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(alpha),
        "ss_base_model_version": {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}[family],
        "ss_v2": str(family == "sd2"),
        "ss_sd_model_name": {"sd1": "v1-5-pruned-emaonly.safetensors", "sd2": "v2-1_768-ema-pruned.safetensors",
                             "sdxl": "sd_xl_base_1.0.safetensors"}[family],
        "ss_resolution": "(1024, 1024)" if family == "sdxl" else "(512, 512)",
        "ss_clip_skip": "2" if family == "sd1" else "None",
    }
    if conv:
        metadata["ss_network_args"] = json.dumps({"conv_dim": str(rank), "conv_alpha": str(alpha)})
    if output_name:
        metadata["ss_output_name"] = output_name
    metadata.update(extra or {})
    return metadata


def write_kohya_lora(path: Path, kind: str = "sd1", *, seed: int = 0, rank: int = 4, alpha: float = 2.0,
                     conv: bool = True, text_encoder: bool = True, lora_seed: int = 1, metadata: bool = True,
                     output_name: str | None = None, extra_metadata: dict | None = None,
                     dtype: torch.dtype = torch.float16) -> Path:
    """A kohya-format LoRA ``.safetensors`` (fp16 like real files, alpha stored per layer) or, by suffix, a ``.pt``
    pickle of the same tensors (old kohya files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = kohya_lora_state_dict(kind, seed=seed, rank=rank, alpha=alpha, conv=conv, text_encoder=text_encoder,
                                  lora_seed=lora_seed)
    state = {k: v.to(dtype) if k.endswith(".weight") else v for k, v in state.items()}
    if path.suffix == ".safetensors":
        header = kohya_metadata(kind, rank=rank, alpha=alpha, conv=conv, output_name=output_name,
                                extra=extra_metadata) if metadata else {}
        save_file(state, str(path), metadata=header or None)
    else:
        torch.save(state, path)
    return path


def write_diffusers_lora(path: Path, kind: str = "sd1", *, seed: int = 0, rank: int = 4, alpha: float | None = 8.0,
                         text_encoder: bool = True, lora_seed: int = 2, style: str = "peft") -> Path:
    """A diffusers-format LoRA (attention layers only, as diffusers trains them).

    style ``peft``: ``unet.<module>.lora_A.weight``/``lora_B.weight`` with the ``lora_adapter_metadata`` header
    diffusers writes (``lora_alpha``/``r``; no header when ``alpha`` is None). style ``old``:
    ``unet.<module>.lora.down.weight``/``lora.up.weight`` with ``.alpha`` keys (kohya files converted by old
    diffusers versions).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model, targets = lora_targets(kind, seed=seed, conv=False, text_encoder=text_encoder)
    generator = torch.Generator().manual_seed(lora_seed)
    state = {}
    for model_name, module_path, module in targets:
        down, up = _lora_pair(module, rank, generator)
        if model_name != "unet" and not module_path.startswith("text_model."):
            module_path = "text_model." + module_path
        prefix = f"{model_name}.{module_path}"
        if style == "peft":
            state[f"{prefix}.lora_A.weight"], state[f"{prefix}.lora_B.weight"] = down, up
        else:
            state[f"{prefix}.lora.down.weight"], state[f"{prefix}.lora.up.weight"] = down, up
            if alpha is not None:
                state[f"{prefix}.alpha"] = torch.tensor(float(alpha))
    metadata = {"format": "pt"}
    if style == "peft" and alpha is not None:
        config = {"r": rank, "lora_alpha": alpha, "target_modules": ["to_q", "to_k", "to_v", "to_out.0"]}
        models = ["unet"] + (["text_encoder"] if text_encoder else []) + \
                 (["text_encoder_2"] if text_encoder and model.text_encoder_2 is not None else [])
        metadata["lora_adapter_metadata"] = json.dumps({m: config for m in models}, sort_keys=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata)
    return path


def write_lycoris_lora(path: Path, kind: str = "sd1", *, algo: str = "loha", seed: int = 0, rank: int = 4,
                       alpha: float = 2.0, lora_seed: int = 3) -> Path:
    """A LyCORIS LoHa (``hada_w1_a`` ...) or LoKr (``lokr_w1``, ``lokr_w2_a``/``lokr_w2_b``) file on the UNet's
    attention layers and the text encoder, kohya names."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model, targets = lora_targets(kind, seed=seed, conv=False, text_encoder=True)
    generator = torch.Generator().manual_seed(lora_seed)
    unet_config = dict(model.unet.config)
    state = {}

    def draw(rows: int, columns: int, fan_in: int) -> torch.Tensor:
        return torch.randn(rows, columns, generator=generator) / math.sqrt(fan_in)

    for model_name, module_path, module in targets:
        name = kohya_name(kind, model_name, module_path, unet_config)
        out_features, in_features = module.weight.shape[:2]
        if algo == "loha":
            for index in (1, 2):
                state[f"{name}.hada_w{index}_a"] = draw(out_features, rank, rank)
                state[f"{name}.hada_w{index}_b"] = draw(rank, in_features, in_features)
        elif algo == "lokr":
            factor = 2 if out_features % 2 == 0 and in_features % 2 == 0 else 1
            state[f"{name}.lokr_w1"] = draw(factor, factor, 1)
            state[f"{name}.lokr_w2_a"] = draw(out_features // factor, rank, rank)
            state[f"{name}.lokr_w2_b"] = draw(rank, in_features // factor, in_features)
        else:
            raise ValueError(f"unknown LyCORIS algorithm {algo!r}")
        state[f"{name}.alpha"] = torch.tensor(float(alpha))
    metadata = {"ss_network_module": "lycoris.kohya", "ss_network_args": json.dumps({"algo": algo}),
                "ss_base_model_version": {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}[kind.split("-")[0]]}
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata)
    return path


# ---------------------------------------------------------------------------------------------- embeddings


def random_vectors(count: int, width: int, *, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, width, generator=torch.Generator().manual_seed(seed)) * 0.02


def write_a1111_embedding(path: Path, vectors: torch.Tensor, *, step: int = 1500,
                          checkpoint: str = "e1441589a6", checkpoint_name: str = "v1-5-pruned") -> Path:
    """An embedding ``.pt`` as A1111's textual-inversion training saves it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": vectors.detach().clone()},
        "name": path.stem,
        "step": step,
        "sd_checkpoint": checkpoint,
        "sd_checkpoint_name": checkpoint_name,
    }
    torch.save(data, path)
    return path


def write_safetensors_embedding(path: Path, vectors: torch.Tensor, vectors_g: torch.Tensor | None = None) -> Path:
    """``emb_params`` (SD 1.x/2.x) or, with ``vectors_g``, SDXL's ``clip_l`` + ``clip_g``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if vectors_g is None:
        state = {"emb_params": vectors.detach().clone().contiguous()}
    else:
        state = {"clip_l": vectors.detach().clone().contiguous(), "clip_g": vectors_g.detach().clone().contiguous()}
    save_file(state, str(path))
    return path


def write_diffusers_embedding(path: Path, vector: torch.Tensor, token: str = "<concept>") -> Path:
    """A diffusers ``learned_embeds.bin``: ``{token: tensor(width)}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({token: vector.detach().clone()}, path)
    return path
