"""ControlNet and T2I-Adapter files as users have them: every layout is recognised from its keys and shapes and
loads with exactly the weights it holds (and computes what the module written computes); bad files are refused
with a reason; the library lists the ControlNet folders under sd-webui-controlnet's titles and finds models the
ways its clients name them; the model manager accounts for them and reads a file once."""
import gc
import hashlib
import json
import os
import weakref

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import ControlNetModel

from paragoger.cli import parse_args
from paragoger.control.model_files import ControlModelInfo, ControlModelLibrary
from paragoger.control.models import (ControlModels, config_for, detect_control_model, expected_bytes,
                                      load_control_model, read_weights, to_diffusers)
from paragoger.devices import DeviceConfig
from paragoger.errors import ModelLoadError, NotFoundError
from paragoger.model_manager.memory import ModelManager
from paragoger.model_manager.tiny_model import ldm_state_dict, save_single_file, tiny_model
from paragoger.paths import Paths
from tests.fixtures import control, networks

CPU = torch.device("cpu")
CONTEXT_WIDTH = {"sd1": 32, "sd2": 32, "sdxl": 96}  # the tiny checkpoints' text encoder widths


def info_for(path) -> ControlModelInfo:
    return ControlModelInfo(name=path.stem if path.is_file() else path.name, path=path, title=path.name,
                            format="single" if path.is_file() else "diffusers")


def load(path, dtype=torch.float32):
    return load_control_model(info_for(path), device=CPU, dtype=dtype)


def assert_same_weights(loaded: torch.nn.Module, expected: torch.nn.Module):
    got, want = loaded.state_dict(), expected.state_dict()
    assert got.keys() == want.keys()
    for key, tensor in want.items():
        assert got[key].dtype == tensor.dtype and torch.equal(got[key], tensor), key


def controlnet_output(controlnet, family: str):
    """What a ControlNet gives the UNet for one fixed step (a 64x64 control picture, 8x8 latents)."""
    generator = torch.Generator().manual_seed(11)
    extra = {}
    if family == "sdxl":
        extra["added_cond_kwargs"] = {"text_embeds": torch.randn(1, 64, generator=generator),
                                      "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])}
    with torch.no_grad():
        down, mid = controlnet(torch.randn(1, 4, 8, 8, generator=generator), 500,
                               torch.randn(1, 77, CONTEXT_WIDTH[family], generator=generator),
                               torch.rand(1, 3, 64, 64, generator=generator), return_dict=False, **extra)
    return [*down, mid]


# ------------------------------------------------------------------------------------------------ ControlNets


@pytest.mark.parametrize("family, layout, file_name", [
    ("sd1", "original", "control_v11p_sd15_canny.pth"),
    ("sd1", "original", "control_v11p_sd15_canny.safetensors"),
    ("sd1", "diffusers", "control_v11p_sd15_canny"),
    ("sd1", "diffusers-single", "control_sd15_canny_diffusers.safetensors"),
    ("sd2", "original", "controlnet_sd21_canny.safetensors"),
    ("sdxl", "original", "controlnet_sdxl_canny.safetensors"),
    ("sdxl", "diffusers", "controlnet-canny-sdxl-1.0"),
    ("sdxl", "diffusers-single", "controlnet-canny-sdxl-1.0.safetensors"),
])
def test_every_controlnet_layout_loads_the_weights_its_file_holds(tmp_path, family, layout, file_name):
    path = control.write_controlnet(tmp_path / file_name, family, seed=3, layout=layout)
    written = control.tiny_controlnet(family, seed=3)

    model = load(path)

    assert (model.kind, model.family, model.conditioning_channels) == ("controlnet", family, 3)
    assert isinstance(model.module, ControlNetModel) and not model.module.training
    assert not any(p.requires_grad for p in model.module.parameters())
    assert_same_weights(model.module, written)
    for got, want in zip(controlnet_output(model.module, family), controlnet_output(written, family)):
        assert torch.allclose(got, want, atol=1e-5, rtol=0)


def test_an_original_file_is_one_diffusers_reads_the_same_way(tmp_path):
    """The fixture's original layout is the real one: diffusers' own single-file loader agrees."""
    path = control.write_controlnet(tmp_path / "control_v11p_sd15_canny.safetensors", "sd1", seed=4)
    config_folder = control.write_controlnet(tmp_path / "config", "sd1", seed=4, layout="diffusers")

    theirs = ControlNetModel.from_single_file(str(path), config=str(config_folder), local_files_only=True)

    assert_same_weights(load(path).module, theirs)


def test_a_pruned_fp16_file_loads_in_the_precision_asked_for(tmp_path):
    path = control.write_controlnet(tmp_path / "control_v11p_sd15_canny_fp16.safetensors", "sd1", seed=5,
                                    dtype=torch.float16)
    written = control.tiny_controlnet("sd1", seed=5)

    as_fp32, as_fp16 = load(path, torch.float32), load(path, torch.float16)

    assert {p.dtype for p in as_fp32.module.parameters()} == {torch.float32}
    assert {p.dtype for p in as_fp16.module.parameters()} == {torch.float16}
    for key, tensor in written.state_dict().items():
        assert torch.equal(as_fp32.module.state_dict()[key], tensor.half().float()), key


def test_an_original_file_without_the_control_model_prefix_loads_too(tmp_path):
    """Some shared ControlNets (SD 2.1 ones among them) hold the original names without ``control_model.``."""
    state = control.original_state_dict(control.tiny_controlnet("sd2", seed=9))
    path = save_single_file(tmp_path / "controlnet_sd21_depth.safetensors",
                            {k.removeprefix("control_model."): v for k, v in state.items()})

    model = load(path)

    assert model.family == "sd2"
    assert_same_weights(model.module, control.tiny_controlnet("sd2", seed=9))


def test_a_controlnet_10_file_with_a_whole_sd_model_beside_it_loads_only_the_controlnet(tmp_path):
    """ControlNet 1.0's control_sd15_*.pth carry the SD model they were trained with; only the ControlNet is read."""
    state = control.original_state_dict(control.tiny_controlnet("sd1", seed=6))
    state.update(ldm_state_dict(tiny_model("sd1", seed=6)))
    path = save_single_file(tmp_path / "control_sd15_canny.safetensors", {k: v.contiguous() for k, v in state.items()})

    model = load(path)

    assert_same_weights(model.module, control.tiny_controlnet("sd1", seed=6))


def test_the_shuffle_model_pools_its_result_as_its_config_says():
    """control_v11e_sd15_shuffle is the one ControlNet whose shapes hide a setting: its name tells it."""
    weights = control.tiny_controlnet("sd1").state_dict()
    assert config_for("controlnet", "sd1", weights, "diffusers", "control_v11e_sd15_shuffle")["global_pool_conditions"]
    assert not config_for("controlnet", "sd1", weights, "diffusers", "control_v11p_sd15_canny")["global_pool_conditions"]


# ------------------------------------------------------------------------------------------------ T2I-Adapters


@pytest.mark.parametrize("kind, layout, file_name, family", [
    ("full", "original", "t2iadapter_canny_sd15v2.pth", "sd1"),
    ("full", "original", "t2iadapter_depth_sd14v1.safetensors", "sd1"),
    ("light", "original", "t2iadapter_color_sd14v1.pth", "sd1"),
    ("full", "diffusers", "t2i-adapter-canny-sd15", "sd1"),
    ("light", "diffusers", "t2i-adapter-color-sd15", "sd1"),
    ("full_xl", "diffusers", "t2i-adapter-canny-sdxl-1.0", "sdxl"),
])
def test_every_t2i_adapter_layout_loads_the_weights_its_file_holds(tmp_path, kind, layout, file_name, family):
    path = control.write_t2i_adapter(tmp_path / file_name, seed=2, layout=layout, kind=kind)
    written = control.tiny_t2i_adapter(seed=2, kind=kind)

    model = load(path)

    assert (model.kind, model.family, model.conditioning_channels) == ("t2i_adapter", family, 3)
    assert model.module.config.adapter_type == control.ADAPTER_KINDS[kind]
    assert_same_weights(model.module, written)
    picture = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for got, want in zip(model.module(picture), written(picture)):
            assert torch.allclose(got, want, atol=1e-5, rtol=0)


def test_a_sketch_adapter_takes_a_grey_picture(tmp_path):
    path = control.write_t2i_adapter(tmp_path / "t2iadapter_sketch_sd14v1.pth", seed=1, in_channels=1)

    assert load(path).conditioning_channels == 1


# ------------------------------------------------------------------------------------------------ refusals


class RunsWhenUnpickled:
    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def test_a_pth_that_asks_to_run_code_is_refused_and_named(tmp_path):
    marker = tmp_path / "pwned"
    state = control.original_state_dict(control.tiny_controlnet("sd1"))
    torch.save({**state, "payload": RunsWhenUnpickled(os.system, f"touch {marker}")}, tmp_path / "evil.pth")

    with pytest.raises(ModelLoadError) as error:
        load(tmp_path / "evil.pth")

    assert error.value.key == "pickle_refused" and "system" in error.value.params["what"]
    assert not marker.exists()


def test_a_diffusers_folder_with_bin_weights_goes_through_the_safe_unpickler(tmp_path):
    folder = control.write_controlnet(tmp_path / "sd-controlnet-canny", "sd1", seed=2, layout="diffusers")
    weights = folder / "diffusion_pytorch_model.safetensors"
    torch.save(control.tiny_controlnet("sd1", seed=2).state_dict(), folder / "diffusion_pytorch_model.bin")
    weights.unlink()
    assert_same_weights(load(folder).module, control.tiny_controlnet("sd1", seed=2))

    marker = tmp_path / "pwned"
    torch.save({"conv_in.weight": torch.zeros(1), "x": RunsWhenUnpickled(os.system, f"touch {marker}")},
               folder / "diffusion_pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="system"):
        load(folder)
    assert not marker.exists()


def test_a_diffusers_folder_with_sharded_weights_loads_every_shard(tmp_path):
    folder = control.write_controlnet(tmp_path / "controlnet-canny-sdxl-1.0", "sdxl", seed=8, layout="diffusers")
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    state = control.tiny_controlnet("sdxl", seed=8).state_dict()
    keys = sorted(state)
    shards = {"diffusion_pytorch_model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "diffusion_pytorch_model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    for shard, shard_keys in shards.items():
        save_single_file(folder / shard, {key: state[key].contiguous() for key in shard_keys})
    total = sum(t.numel() * 4 for t in state.values())
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({
        "metadata": {"total_size": total}, "weight_map": {k: s for s, ks in shards.items() for k in ks}}))

    assert_same_weights(load(folder).module, control.tiny_controlnet("sdxl", seed=8))
    assert expected_bytes(info_for(folder), torch.float32) == total


@pytest.mark.parametrize("file_name", ["control_v11p_sd15_canny.safetensors", "control_v11p_sd15_canny.pth"])
def test_a_truncated_file_is_reported_as_damaged(tmp_path, file_name):
    path = control.write_controlnet(tmp_path / file_name, "sd1")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    with pytest.raises(ModelLoadError) as error:
        load(path)

    assert error.value.key == "control_model_corrupt" and path.stem in str(error.value)


def test_a_file_with_a_missing_weight_is_reported_as_damaged(tmp_path):
    state = control.original_state_dict(control.tiny_controlnet("sd1"))
    del state["control_model.zero_convs.3.0.weight"]
    path = save_single_file(tmp_path / "control_v11p_sd15_canny.safetensors", state)

    with pytest.raises(ModelLoadError) as error:
        load(path)

    assert error.value.key == "control_model_corrupt" and "controlnet_down_blocks.3.weight" in str(error.value)


def test_a_checkpoint_a_lora_or_a_control_lora_given_as_a_controlnet_is_not_one(tmp_path, tiny_sd1_file):
    lora = networks.write_kohya_lora(tmp_path / "style.safetensors", "sd1")
    # Stability's Control-LoRAs share ControlNet 1.x's names (unprefixed) but hold LoRA pairs, marked by
    # ``lora_controlnet``.
    original = control.original_state_dict(control.tiny_controlnet("sd1"))
    control_lora = save_single_file(tmp_path / "control-lora-canny-rank128.safetensors", {
        **{k.removeprefix("control_model."): v for k, v in original.items()}, "lora_controlnet": torch.zeros(1)})
    for path in (tiny_sd1_file, lora, control_lora):
        with pytest.raises(ModelLoadError) as error:
            load(path)
        assert error.value.key == "control_model_unknown" and path.stem in str(error.value)


@pytest.mark.parametrize("file_name", ["ip-adapter_sd15.bin", "ip-adapter_sd15.safetensors"])
def test_an_ip_adapter_file_is_recognised_from_either_layout(tmp_path, file_name):
    """IP-Adapter files share the folder; their .bin holds nested dicts, their .safetensors dotted keys (loading
    and using them: tests/test_control_ip_adapter.py)."""
    image_proj = {"proj.weight": torch.zeros(3072, 1024), "norm.weight": torch.ones(768)}
    ip_adapter = {"1.to_k_ip.weight": torch.zeros(320, 768), "1.to_v_ip.weight": torch.zeros(320, 768)}
    path = tmp_path / file_name
    if path.suffix == ".bin":
        torch.save({"image_proj": image_proj, "ip_adapter": ip_adapter}, path)
    else:
        save_single_file(path, {**{f"image_proj.{k}": v for k, v in image_proj.items()},
                                **{f"ip_adapter.{k}": v for k, v in ip_adapter.items()}})

    assert detect_control_model(read_weights(path, path.stem), path.stem) == ("ip_adapter", "sd1")


# ------------------------------------------------------------------------------------------------ library


def legacy_hash(path) -> str:
    with open(path, "rb") as stream:
        stream.seek(0x100000)
        return hashlib.sha256(stream.read(0x10000)).hexdigest()[:8]


def test_library_lists_both_folders_under_a1111_titles_and_finds_models_as_clients_name_them(tmp_path):
    first, second = tmp_path / "models" / "ControlNet", tmp_path / "more"
    canny = control.write_controlnet(first / "control_v11p_sd15_canny.pth", "sd1", seed=1)
    control.write_controlnet(second / "control_v11p_sd15_canny.safetensors", "sd1", seed=2)  # first folder wins
    depth = control.write_controlnet(second / "sdxl" / "controlnet-depth-sdxl-1.0", "sdxl", layout="diffusers")
    adapter = control.write_t2i_adapter(second / "t2iadapter_canny_sd15v2.pth")
    control.write_controlnet(first / "annotators" / "not_a_model.pth", "sd1")  # annotator weights: not listed
    (first / "control_v11p_sd15_canny.yaml").write_text("model: {}\n")

    library = ControlModelLibrary([first, second])

    entries = library.entries()
    assert [e.name for e in entries] == ["control_v11p_sd15_canny", "controlnet-depth-sdxl-1.0",
                                         "t2iadapter_canny_sd15v2"]
    assert [e.format for e in entries] == ["single", "diffusers", "single"]
    assert entries[0].path == canny and entries[0].title == f"control_v11p_sd15_canny [{legacy_hash(canny)}]"
    weights = depth / "diffusion_pytorch_model.safetensors"
    assert entries[1].path == depth and entries[1].title == f"controlnet-depth-sdxl-1.0 [{legacy_hash(weights)}]"
    for name in (entries[0].title, "control_v11p_sd15_canny", "control_v11p_sd15_canny.pth",
                 "control_v11p_sd15_canny [0123abcd]", "Control_V11p_SD15_Canny"):
        assert library.find(name).path == canny, name
    assert library.find("t2iadapter_canny_sd15v2").path == adapter
    with pytest.raises(NotFoundError) as error:
        library.find("control_v11p_sd15_openpose [cab727d4]")
    assert error.value.key == "control_model_not_found" and str(second) in str(error.value)


def test_the_controlnet_folders_are_models_controlnet_each_flag_and_the_a1111_extensions(tmp_path):
    options = parse_args(["--data-dir", str(tmp_path), "--controlnet-dir", str(tmp_path / "a"),
                          "--controlnet-dir", str(tmp_path / "b")], env={})
    paths = Paths.build(data_dir=options.data_dir, controlnet_dirs=options.controlnet_dirs)

    assert paths.controlnet_dirs == (tmp_path / "a", tmp_path / "b", tmp_path / "models" / "ControlNet",
                                     tmp_path / "extensions" / "sd-webui-controlnet" / "models")


# ------------------------------------------------------------------------------------------------ model manager


def test_models_load_once_through_the_model_manager_and_unloading_frees_them(tmp_path):
    path = control.write_controlnet(tmp_path / "control_v11p_sd15_canny.safetensors", "sd1")
    manager = ModelManager("cpu")
    models = ControlModels(ControlModelLibrary([tmp_path]), manager, DeviceConfig(CPU, torch.float32, torch.float32))

    model = models.get("control_v11p_sd15_canny")

    assert models.get(models.library.find("control_v11p_sd15_canny").title) is model and manager.loads == 1
    [entry] = manager.entries("controlnet")
    size = sum(p.numel() * 4 for p in model.module.parameters())
    assert entry.name == "control_v11p_sd15_canny" and size <= entry.bytes_in("ram") <= size * 1.1
    module = weakref.ref(model.module)
    del model
    manager.unload("controlnet", str(path))
    gc.collect()
    assert manager.entries("controlnet") == [] and module() is None


# ------------------------------------------------------------------------------------------------ full size


@pytest.mark.parametrize("family, layout", [("sd1", "original"), ("sd2", "original"), ("sdxl", "diffusers")])
def test_real_size_controlnets_are_recognised_and_get_their_exact_architecture(family, layout):
    """control_v11p_sd15_canny (361M values), an SD 2.1 ControlNet, controlnet-canny-sdxl-1.0 (1.25G): shapes only,
    on the meta device."""
    real = control.full_size_controlnet_on_meta(family)
    state = control.original_state_dict(real) if layout == "original" else real.state_dict()

    assert detect_control_model(state, "control_v11p_sd15_canny") == ("controlnet", family)
    kind, _, weights, found_layout = to_diffusers(state, "control_v11p_sd15_canny")
    with init_empty_weights():
        built = ControlNetModel.from_config(config_for(kind, family, weights, found_layout, "canny"))

    count = sum(p.numel() for p in built.parameters())
    assert count == sum(p.numel() for p in real.parameters())
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in weights.items()}
    if family == "sd1":
        assert 361_000_000 < count < 362_000_000
