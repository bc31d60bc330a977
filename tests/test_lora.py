"""LoRA: listing, hashes, formats (kohya SD 1.x/SDXL, diffusers/PEFT, LyCORIS), and applying one for exactly one
generation: the shared checkpoint is bit-identical afterwards, however the generation ends."""
import hashlib
import json
import os
import re
import struct
import types

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from paragoger.core.conditioning import PromptEncoder
from paragoger.errors import UserError
from paragoger.model_manager import lora as lora_module
from paragoger.model_manager.components import CheckpointInfo
from paragoger.model_manager.hashing import HashCache
from paragoger.model_manager.loader import load_checkpoint
from paragoger.model_manager.lora import LoraCall, LoraLibrary, build_layer_table, lora_hashes_field
from paragoger.prompts import extract_extra_networks
from tests.fixtures import networks as nf


def load(path, dtype=torch.float32):
    return load_checkpoint(CheckpointInfo(path=path, name=path.name, model_name=path.stem), dtype=dtype)


@pytest.fixture(scope="module")
def sd1(tiny_model_file):
    return load(tiny_model_file("sd1", "safetensors"))


@pytest.fixture(scope="module")
def sdxl(tiny_model_file):
    return load(tiny_model_file("sdxl", "safetensors"))


@pytest.fixture
def library(tmp_path):
    def make(**options):
        return LoraLibrary([tmp_path / "Lora"], HashCache(tmp_path / "cache.json"), **options)
    (tmp_path / "Lora").mkdir(exist_ok=True)
    return make


def snapshot(components):
    """Every parameter and buffer: the object, where its data lives, and a copy of its values."""
    found = {}
    for model_name, module in components.modules().items():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            found[f"{model_name}.{name}"] = (tensor, tensor.data_ptr(), tensor.detach().clone())
    return found


def changed(components, before) -> set[str]:
    """Names whose values differ from ``before``; asserts the tensors themselves were not replaced."""
    now = snapshot(components)
    assert now.keys() == before.keys()
    different = set()
    for name, (tensor, pointer, values) in before.items():
        assert now[name][0] is tensor and now[name][1] == pointer, f"{name} was replaced, not restored in place"
        if not torch.equal(now[name][2], values):
            different.add(name)
    return different


def unet_out(components, cond):
    torch.manual_seed(0)
    sample = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return components.unet(sample, 10, encoder_hidden_states=cond).sample


# ------------------------------------------------------------------------------------------------ restoring


@pytest.mark.parametrize("kind, dtype", [("sd1", torch.float32), ("sdxl", torch.float32), ("sd1", torch.float16)])
def test_lora_applied_then_removed_leaves_unet_and_text_encoder_bit_identical(library, tmp_path, tiny_model_file,
                                                                             kind, dtype, request):
    components = request.getfixturevalue(kind) if dtype == torch.float32 else load(
        tiny_model_file(kind, "safetensors"), dtype)
    nf.write_kohya_lora(tmp_path / "Lora" / "style.safetensors", kind)
    lib = library()
    before = snapshot(components)
    with lib.apply(components, [(lib.find("style"), 1.0, 1.0)]) as applied:
        inside = changed(components, before)
        assert applied[0].modules == applied[0].layers > 50
    assert {name.split(".")[0] for name in inside} >= {"unet", "text_encoder"} | (
        {"text_encoder_2"} if kind == "sdxl" else set())
    assert changed(components, before) == set()


def test_lora_removed_even_when_generation_raises(sd1, library, tmp_path, monkeypatch):
    nf.write_kohya_lora(tmp_path / "Lora" / "style.safetensors", "sd1")
    lib = library()
    calls = [(lib.find("style"), 1.0, 1.0)]
    before = snapshot(sd1)
    for error in (RuntimeError("sampler failed"), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            with lib.apply(sd1, calls):
                assert changed(sd1, before)
                raise error
        assert changed(sd1, before) == set()

    # A failure while merging (halfway through the layers) restores what was already merged.
    real_merge, merged = lora_module._merge_into, []

    def failing_merge(tensor, delta, backups):
        if len(merged) == 20:
            raise RuntimeError("CUDA out of memory")
        merged.append(tensor)
        real_merge(tensor, delta, backups)

    monkeypatch.setattr(lora_module, "_merge_into", failing_merge)
    with pytest.raises(RuntimeError, match="out of memory"):
        with lib.apply(sd1, calls):
            pytest.fail("the block must not run when merging failed")
    assert len(merged) == 20 and changed(sd1, before) == set()


def test_lora_changes_the_output(sd1, library, tmp_path):
    nf.write_kohya_lora(tmp_path / "Lora" / "style.safetensors", "sd1")
    lib = library()
    plain_cond = PromptEncoder(sd1).encode("a lighthouse").embeds
    plain_out = unet_out(sd1, plain_cond)
    with lib.apply(sd1, [(lib.find("style"), 1.0, 1.0)]):
        lora_cond = PromptEncoder(sd1).encode("a lighthouse").embeds
        lora_out = unet_out(sd1, plain_cond)
    assert (lora_cond - plain_cond).abs().max() > 1e-3
    assert (lora_out - plain_out).abs().max() > 1e-3
    assert torch.equal(PromptEncoder(sd1).encode("a lighthouse").embeds, plain_cond)
    assert torch.equal(unet_out(sd1, plain_cond), plain_out)


def test_weights_te_and_unet_apply_separately(sd1, library, tmp_path):
    nf.write_kohya_lora(tmp_path / "Lora" / "style.safetensors", "sd1")
    lib = library()
    info = lib.find("style")
    before = snapshot(sd1)
    with lib.apply(sd1, [(info, 1.0, 0.0)]):
        assert {n.split(".")[0] for n in changed(sd1, before)} == {"text_encoder"}
    with lib.apply(sd1, [(info, 0.0, 1.0)]):
        assert {n.split(".")[0] for n in changed(sd1, before)} == {"unet"}
    # The multiplier scales the difference: half the weight, half the change (te and unet independently).
    q = sd1.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_q.weight
    fc1 = sd1.text_encoder.encoder.layers[0].mlp.fc1.weight
    original_q, original_fc1 = q.clone(), fc1.clone()
    with lib.apply(sd1, [(info, 1.0, 1.0)]):
        full_q, full_fc1 = q - original_q, fc1 - original_fc1
    with lib.apply(sd1, [(info, 0.25, 0.5)]):
        half_q, quarter_fc1 = q - original_q, fc1 - original_fc1
    assert torch.allclose(half_q, full_q * 0.5, atol=1e-6) and full_q.abs().max() > 0
    assert torch.allclose(quarter_fc1, full_fc1 * 0.25, atol=1e-6) and full_fc1.abs().max() > 0
    assert changed(sd1, before) == set()


# ------------------------------------------------------------------------------------------------ formats


def expected_lora_delta(path, name, weight):
    with safe_open(str(path), "pt") as f:
        down, up = f.get_tensor(f"{name}.lora_down.weight").float(), f.get_tensor(f"{name}.lora_up.weight").float()
        alpha = float(f.get_tensor(f"{name}.alpha"))
    delta = up.flatten(1) @ down.flatten(1)
    return (delta.reshape(weight.shape)) * alpha / down.shape[0]


def test_kohya_sd1_lora_file_loads_all_keys(sd1, library, tmp_path):
    path = nf.write_kohya_lora(tmp_path / "Lora" / "style.safetensors", "sd1", rank=4, alpha=2.0, conv=True)
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.") for k in keys)
    assert any(k.startswith("lora_te_text_model_encoder_layers_1_self_attn_k_proj.") for k in keys)
    assert any(k.startswith("lora_unet_down_blocks_0_resnets_0_conv1.") for k in keys)  # LoCon, 3x3
    lib = library()
    attention = sd1.unet.down_blocks[0].attentions[0]
    targets = {  # kohya name -> the weight it must change
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k":
            attention.transformer_blocks[0].attn2.to_k.weight,
        "lora_unet_down_blocks_0_attentions_0_proj_in": attention.proj_in.weight,  # 1x1 conv in SD 1.x
        "lora_unet_up_blocks_1_resnets_0_conv1": sd1.unet.up_blocks[1].resnets[0].conv1.weight,
        "lora_te_text_model_encoder_layers_1_self_attn_k_proj":
            sd1.text_encoder.encoder.layers[1].self_attn.k_proj.weight,
    }
    originals = {name: weight.clone() for name, weight in targets.items()}
    with lib.apply(sd1, [(lib.find("style"), 0.8, 0.8)]) as applied:
        for name, weight in targets.items():
            expected = originals[name] + 0.8 * expected_lora_delta(path, name, weight)
            assert torch.allclose(weight, expected, atol=1e-6), name
    result = applied[0]
    assert result.unmatched_keys == [] and result.unsupported_keys == [] and result.mismatched == []
    assert result.keys_used == len(keys) and result.modules == len(keys) // 3


def test_sdxl_kohya_lora_maps_sgm_names(sdxl, library, tmp_path):
    path = nf.write_kohya_lora(tmp_path / "Lora" / "xl.safetensors", "sdxl", metadata=False)
    unet, te1, te2 = sdxl.unet, sdxl.text_encoder, sdxl.text_encoder_2
    # Original (sgm/LDM) block numbering of the tiny SDXL UNet (one layer per block, two levels), written out
    # by hand: input_blocks 0 = conv_in, 1 = level 0 resnet, 2 = its downsampler, 3 = level 1 resnet + attention.
    targets = {
        "lora_unet_input_blocks_3_1_transformer_blocks_1_attn2_to_k":
            unet.down_blocks[1].attentions[0].transformer_blocks[1].attn2.to_k.weight,
        "lora_unet_middle_block_1_transformer_blocks_0_ff_net_0_proj":
            unet.mid_block.attentions[0].transformer_blocks[0].ff.net[0].proj.weight,
        "lora_unet_output_blocks_1_1_proj_out": unet.up_blocks[0].attentions[1].proj_out.weight,
        "lora_unet_output_blocks_1_2_conv": unet.up_blocks[0].upsamplers[0].conv.weight,
        "lora_unet_input_blocks_2_0_op": unet.down_blocks[0].downsamplers[0].conv.weight,
        "lora_unet_input_blocks_1_0_in_layers_2": unet.down_blocks[0].resnets[0].conv1.weight,
        "lora_unet_output_blocks_2_0_skip_connection": unet.up_blocks[1].resnets[0].conv_shortcut.weight,
        "lora_te1_text_model_encoder_layers_1_mlp_fc2": te1.encoder.layers[1].mlp.fc2.weight,
        "lora_te2_text_model_encoder_layers_0_self_attn_q_proj":
            te2.text_model.encoder.layers[0].self_attn.q_proj.weight,
    }
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
    assert not any(k.startswith(("lora_unet_down_blocks", "lora_unet_up_blocks", "lora_unet_mid_block")) for k in keys)
    for name in targets:
        assert f"{name}.lora_down.weight" in keys, name
    lib = library()
    assert lib.find("xl").families == ("sdxl",)  # from the te1/te2 names (this file has no header)
    originals = {name: weight.clone() for name, weight in targets.items()}
    with lib.apply(sdxl, [(lib.find("xl"), 1.0, 1.0)]) as applied:
        for name, weight in targets.items():
            assert torch.allclose(weight, originals[name] + expected_lora_delta(path, name, weight), atol=1e-6), name
    assert applied[0].unmatched_keys == [] and applied[0].mismatched == []
    assert applied[0].keys_used == len(keys)


def test_real_sdxl_lora_names_name_layers_of_the_real_unet():
    """Names as they appear in real kohya SDXL LoRAs, looked up in a full-size SDXL UNet (on the meta device)."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    from paragoger.model_manager import configs

    folder = configs.config_folder_for("sdxl", "base", "epsilon")
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(configs.model_config(folder, "unet"))
    table = build_layer_table(types.SimpleNamespace(unet=unet, text_encoder=None, text_encoder_2=None))["unet"]
    blocks = "transformer_blocks"
    expected = {
        f"input_blocks_4_1_{blocks}_0_attn1_to_q": f"down_blocks.1.attentions.0.{blocks}.0.attn1.to_q",
        f"input_blocks_8_1_{blocks}_9_ff_net_2": f"down_blocks.2.attentions.1.{blocks}.9.ff.net.2",
        f"middle_block_1_{blocks}_9_attn2_to_out_0": f"mid_block.attentions.0.{blocks}.9.attn2.to_out.0",
        f"output_blocks_0_1_{blocks}_3_attn2_to_v": f"up_blocks.0.attentions.0.{blocks}.3.attn2.to_v",
        "output_blocks_5_1_proj_in": "up_blocks.1.attentions.2.proj_in",
        "output_blocks_2_2_conv": "up_blocks.0.upsamplers.0.conv",
        "input_blocks_3_0_op": "down_blocks.0.downsamplers.0.conv",
        "output_blocks_8_0_skip_connection": "up_blocks.2.resnets.2.conv_shortcut",
    }
    for name, path in expected.items():
        assert table[name][0] == path, name


@pytest.mark.parametrize("algo", ["loha", "lokr"])
def test_lycoris_loha_and_lokr_apply_their_differences(sd1, library, tmp_path, algo):
    path = nf.write_lycoris_lora(tmp_path / "Lora" / f"{algo}.safetensors", "sd1", algo=algo, rank=4, alpha=2.0)
    lib = library()
    name = "lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_attn1_to_v"
    weight = sd1.unet.up_blocks[1].attentions[0].transformer_blocks[0].attn1.to_v.weight
    original = weight.clone()
    with safe_open(str(path), "pt") as f:
        t = {k.split(".", 1)[1]: f.get_tensor(k) for k in f.keys() if k.startswith(name + ".")}
    if algo == "loha":
        delta = (t["hada_w1_a"] @ t["hada_w1_b"]) * (t["hada_w2_a"] @ t["hada_w2_b"]) * 2.0 / 4
    else:
        delta = torch.kron(t["lokr_w1"], t["lokr_w2_a"] @ t["lokr_w2_b"]) * 2.0 / 4
    before = snapshot(sd1)
    with lib.apply(sd1, [(lib.find(algo), 1.0, 1.0)]) as applied:
        assert torch.allclose(weight, original + delta, atol=1e-6)
    assert applied[0].unmatched_keys == [] and applied[0].unsupported_keys == [] and applied[0].modules > 0
    assert changed(sd1, before) == set()


@pytest.mark.parametrize("style, scale", [("peft", 8.0 / 4), ("old", 8.0 / 4)])
def test_diffusers_format_lora_applies_with_its_alpha(sd1, library, tmp_path, style, scale):
    path = nf.write_diffusers_lora(tmp_path / "Lora" / "d.safetensors", "sd1", style=style, rank=4, alpha=8.0)
    lib = library()
    module = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v"
    te_module = "text_encoder.text_model.encoder.layers.0.self_attn.q_proj"
    down, up = ("lora_A", "lora_B") if style == "peft" else ("lora.down", "lora.up")
    with safe_open(str(path), "pt") as f:
        deltas = [f.get_tensor(f"{m}.{up}.weight") @ f.get_tensor(f"{m}.{down}.weight") for m in (module, te_module)]
    weights = [sd1.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_v.weight,
               sd1.text_encoder.encoder.layers[0].self_attn.q_proj.weight]
    originals = [w.clone() for w in weights]
    with lib.apply(sd1, [(lib.find("d"), 1.0, 1.0)]) as applied:
        for weight, original, delta in zip(weights, originals, deltas):
            assert torch.allclose(weight, original + delta * scale, atol=1e-6)
    assert applied[0].unmatched_keys == [] and applied[0].modules == applied[0].layers


def test_pt_lora_is_read_safely_and_a_malicious_one_is_refused(sd1, library, tmp_path):
    nf.write_kohya_lora(tmp_path / "Lora" / "old.pt", "sd1")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"lora_unet_x.lora_down.weight": torch.zeros(1), "payload": Payload()}, tmp_path / "Lora" / "evil.pt")
    lib = library()
    before = snapshot(sd1)
    with lib.apply(sd1, [(lib.find("old"), 1.0, 1.0)]) as applied:
        assert applied[0].modules == applied[0].layers > 50
    with pytest.raises(UserError, match="refused.*system"):
        with lib.apply(sd1, [(lib.find("evil"), 1.0, 1.0)]):
            pass
    assert not marker.exists() and changed(sd1, before) == set()


# ------------------------------------------------------------------------------------------------ library


def test_second_use_does_not_read_the_file_again(sd1, library, tmp_path, monkeypatch):
    path = nf.write_kohya_lora(tmp_path / "Lora" / "style.safetensors", "sd1", conv=False)
    nf.write_kohya_lora(tmp_path / "Lora" / "other.safetensors", "sd1", conv=False, lora_seed=5)
    reads = []
    real_read = lora_module._read_lora_file
    monkeypatch.setattr(lora_module, "_read_lora_file", lambda p, n: reads.append(p.name) or real_read(p, n))
    lib = library()
    info = lib.find("style")
    for _ in range(3):
        with lib.apply(sd1, [(info, 1.0, 1.0)]):
            pass
    assert reads == ["style.safetensors"]
    # A changed file (new size or modification time) is read again.
    nf.write_kohya_lora(path, "sd1", conv=False, rank=2)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    with lib.apply(sd1, [(info, 1.0, 1.0)]):
        pass
    assert reads == ["style.safetensors"] * 2
    # The cache is bounded: with room for one file, alternating two LoRAs reads each time.
    small, reads[:] = library(cache_size=1), []
    for name in ("style", "other", "style"):
        with small.apply(sd1, [(small.find(name), 1.0, 1.0)]):
            pass
    assert reads == ["style.safetensors", "other.safetensors", "style.safetensors"]


def test_lora_for_the_wrong_architecture_is_a_clear_error(sd1, sdxl, library, tmp_path):
    nf.write_kohya_lora(tmp_path / "Lora" / "xl.safetensors", "sdxl")
    nf.write_kohya_lora(tmp_path / "Lora" / "xl-bare.safetensors", "sdxl", metadata=False)
    nf.write_kohya_lora(tmp_path / "Lora" / "one.safetensors", "sd1", metadata=False)
    save_file({"lora_unet_nothing_here.lora_down.weight": torch.zeros(2, 4),
               "lora_unet_nothing_here.lora_up.weight": torch.zeros(4, 2)}, str(tmp_path / "Lora" / "odd.safetensors"))
    lib = library()
    before = snapshot(sd1)
    for name in ("xl", "xl-bare"):
        with pytest.raises(UserError, match=f"LoRA '{name}' is made for SDXL, but the loaded checkpoint is SD 1.x"):
            with lib.apply(sd1, [(lib.find(name), 1.0, 1.0)]):
                pytest.fail("must not apply")
    assert changed(sd1, before) == set()
    with pytest.raises(UserError, match="'one' is made for SD 1.x / SD 2.x, but the loaded checkpoint is SDXL"):
        with lib.apply(sdxl, [(lib.find("one"), 1.0, 1.0)]):
            pass
    with pytest.raises(UserError, match="'odd' does not fit the loaded SD 1.x checkpoint"):
        with lib.apply(sd1, [(lib.find("odd"), 1.0, 1.0)]):
            pass
    assert [i.name for i in lib.compatible("sdxl")] == ["odd", "xl", "xl-bare"]


def addnet_hash_by_hand(path) -> str:
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return hashlib.sha256(data[8 + length:]).hexdigest()


def test_lora_hashes_field_format(library, tmp_path):
    first = nf.write_kohya_lora(tmp_path / "Lora" / "first.safetensors", "sd1", output_name="first_alias")
    nf.write_kohya_lora(tmp_path / "Lora" / "second.safetensors", "sd1",
                        extra_metadata={"sshs_model_hash": "f4112c058273" + "0" * 52})
    third = nf.write_kohya_lora(tmp_path / "Lora" / "sub" / "third.pt", "sd1")
    lib = library()
    _, tags = extract_extra_networks("a <lora:first_alias:1> b <lora:second:0.5:0.2>, <lora:third:1> <lora:gone:1>")
    calls, missing = lib.resolve(tags)
    assert missing == ["gone"]
    assert [(c.info.name, c.te, c.unet, c.mentioned_name) for c in calls] == [
        ("first", 1.0, 1.0, "first_alias"), ("second", 0.5, 0.2, "second"), ("third", 1.0, 1.0, "third")]
    expected_first = addnet_hash_by_hand(first)[:12]  # safetensors: sha256 of the bytes after the header
    expected_third = hashlib.sha256(third.read_bytes()).hexdigest()[:12]  # other files: the file's sha256
    field = lora_hashes_field(calls)
    assert field == f"first_alias: {expected_first}, second: f4112c058273, third: {expected_third}"
    assert re.fullmatch(r"[^:,]+: [0-9a-f]{12}(, [^:,]+: [0-9a-f]{12})*", field)
    # Names lose ':' and ','; a LoRA named twice is listed once; the hash is cached.
    odd = LoraCall(calls[0].info, 1.0, 1.0, "we:ird,name", calls[0].short_hash)
    assert lora_hashes_field([odd, odd]) == f"weirdname: {expected_first}"
    cache = json.loads((tmp_path / "cache.json").read_text())
    assert any(entry["sha256"].startswith(expected_first) for entry in cache["paragoger-addnet-sha256"].values())
    assert lora_hashes_field([]) == ""


def test_library_lists_names_aliases_previews_and_families(library, tmp_path):
    folder = tmp_path / "Lora"
    nf.write_kohya_lora(folder / "chars" / "fubuki.safetensors", "sd1", output_name="fubuki_v2")
    (folder / "chars" / "fubuki.png").write_bytes(b"\x89PNG")
    nf.write_kohya_lora(folder / "space_hopper.safetensors", "sdxl")
    (folder / "space_hopper.preview.png").write_bytes(b"\x89PNG")
    (folder / "notes.txt").write_text("not a LoRA")
    lib = library()
    entries = {e.name: e for e in lib.entries()}
    assert list(entries) == ["fubuki", "space_hopper"]
    fubuki, hopper = entries["fubuki"], entries["space_hopper"]
    assert (fubuki.relative, fubuki.alias, fubuki.families) == ("chars/fubuki.safetensors", "fubuki_v2", ("sd1",))
    assert fubuki.preview == folder / "chars" / "fubuki.png" and hopper.preview == folder / "space_hopper.preview.png"
    assert hopper.families == ("sdxl",) and hopper.base_model_version == "sdxl_base_v1-0"
    assert fubuki.sd_model_name == "v1-5-pruned-emaonly.safetensors"
    assert lib.find("fubuki_v2") is fubuki and lib.find("nope") is None
    (folder / "space_hopper.safetensors").unlink()
    assert [e.name for e in lib.refresh()] == ["fubuki"]
    with pytest.raises(UserError, match="<lora:fubuki:strong> has a weight that is not a number"):
        lib.resolve(extract_extra_networks("<lora:fubuki:strong>")[1])


def test_lora_family_from_real_widths_and_headers():
    families = lora_module.families_of
    attn2 = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"
    assert families({attn2: (16, 768)}, {}) == ("sd1",)
    assert families({attn2: (16, 1024)}, {}) == ("sd2",)
    assert families({"lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": (16, 2048)},
                    {}) == ("sdxl",)
    assert families({"unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": (4, 2048)},
                    {}) == ("sdxl",)
    assert families({}, {"ss_base_model_version": "sdxl_base_v1-0", "ss_v2": "False"}) == ("sdxl",)
    assert families({}, {"ss_v2": "True"}) == ("sd2",)
    assert families({}, {"modelspec.architecture": "stable-diffusion-v1/lora"}) == ("sd1",)
    assert families({}, {"ss_v2": "False"}) == ("sd1",)
    assert families({"lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (8, 768)}, {}) == ("sd1", "sd2")
    assert families({"lora_unet_conv_in.lora_down.weight": (8, 4, 3, 3)}, {}) == ("sd1", "sd2", "sdxl")
    # The tensors win over a header that says otherwise.
    assert families({"lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (8, 1280)},
                    {"ss_base_model_version": "sd_v1"}) == ("sdxl",)


@pytest.mark.parametrize("axis, multiplier", [("input", 1.0), ("input", 0.5), ("output", 1.0)])
def test_dora_renormalises_the_changed_weight_to_the_stored_magnitude(sd1, library, tmp_path, axis, multiplier):
    """A DoRA file stores, beside the LoRA, the magnitude each input (LyCORIS's default) or output channel of the
    changed weight must have. Here it is twice the norm of W + dW, so the weight becomes 2 (W + dW); the
    multiplier moves the weight between W and that."""
    path = nf.write_kohya_lora(tmp_path / "Lora" / "plain.safetensors", "sd1", rank=4, alpha=2.0)
    name = "lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_attn1_to_v"
    weight = sd1.unet.up_blocks[1].attentions[0].transformer_blocks[0].attn1.to_v.weight
    original = weight.detach().clone()
    with safe_open(str(path), "pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    down, up = state[f"{name}.lora_down.weight"].float(), state[f"{name}.lora_up.weight"].float()
    merged = original + up @ down * 2.0 / 4
    if axis == "input":
        magnitude = 2 * merged.norm(dim=0, keepdim=True)    # [1, in]
    else:
        magnitude = 2 * merged.norm(dim=1, keepdim=True)    # [out, 1]
    state[f"{name}.dora_scale"] = magnitude.half()
    save_file(state, str(tmp_path / "Lora" / "dora.safetensors"))
    lib = library()
    before = snapshot(sd1)
    with lib.apply(sd1, [(lib.find("dora"), multiplier, multiplier)]) as applied:
        stored = magnitude.half().float() / magnitude  # the file keeps the magnitude in fp16
        expected = original + multiplier * (merged * 2 * stored - original)
        assert torch.allclose(weight, expected, atol=1e-4, rtol=1e-4)
    assert applied[0].unsupported_keys == [] and applied[0].mismatched == []
    assert changed(sd1, before) == set()


def test_dora_magnitude_from_peft_files_is_per_output_channel(sd1, library, tmp_path):
    """PEFT writes DoRA's magnitude as ``lora_magnitude_vector`` of shape [out]: 1.5 times the row norms of the
    LoRA-changed weight makes each of those weights 1.5 times the plain LoRA's."""
    path = nf.write_diffusers_lora(tmp_path / "Lora" / "peft.safetensors", "sd1", style="peft", alpha=8.0)
    with safe_open(str(path), "pt") as f:
        state, header = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    lib = library()
    dora_modules = set()
    with lib.apply(sd1, [(lib.find("peft"), 1.0, 1.0)]):
        as_lora = {name: p.detach().clone() for name, p in sd1.unet.named_parameters()}
        for key in [k for k in state if k.startswith("unet.") and k.endswith(".lora_A.weight")]:
            module_name = key[len("unet."):-len(".lora_A.weight")]
            weight = sd1.unet.get_submodule(module_name).weight.detach()
            state[key.replace(".lora_A.weight", ".lora_magnitude_vector")] = 1.5 * weight.norm(dim=1)
            dora_modules.add(module_name + ".weight")
    save_file(state, str(tmp_path / "Lora" / "peft-dora.safetensors"), metadata=header)
    lib = library()
    with lib.apply(sd1, [(lib.find("peft-dora"), 1.0, 1.0)]) as applied:
        for name, parameter in sd1.unet.named_parameters():
            factor = 1.5 if name in dora_modules else 1.0
            assert torch.allclose(parameter, factor * as_lora[name], atol=1e-5), name
    assert dora_modules and applied[0].unsupported_keys == [] and applied[0].modules > 0
