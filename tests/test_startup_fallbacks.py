"""What the app does instead of failing at start, and says so: half precision a CPU cannot compute natively falls
back to fp32, and a chosen checkpoint that is gone is replaced by the first one found while the choice is kept."""
import json
import shutil

import pytest
import torch

from paragoger.devices import choose_device, cpu_dtype, native_cpu_precisions, read_cpu_flags

AVX2_ONLY = {"fpu", "sse2", "avx", "avx2", "fma"}
SAPPHIRE_RAPIDS = AVX2_ONLY | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16"}
ZEN4 = AVX2_ONLY | {"avx512f", "avx512_bf16"}


@pytest.mark.parametrize("flags, precision, force, dtype, refused", [
    (AVX2_ONLY, "bf16", False, torch.float32, "bf16"),
    (AVX2_ONLY, "half", False, torch.float32, "half"),
    (AVX2_ONLY, "bf16", True, torch.bfloat16, None),        # the user insists: --force-precision
    (AVX2_ONLY, "autocast", False, torch.float32, None),
    (AVX2_ONLY, "full", False, torch.float32, None),
    (SAPPHIRE_RAPIDS, "bf16", False, torch.bfloat16, None),
    (SAPPHIRE_RAPIDS, "half", False, torch.float16, None),
    (ZEN4, "bf16", False, torch.bfloat16, None),
    (ZEN4, "half", False, torch.float32, "half"),
])
def test_cpu_precision_is_used_only_where_the_cpu_computes_it_natively(flags, precision, force, dtype, refused):
    assert cpu_dtype(precision, native_cpu_precisions(flags), force=force) == (dtype, refused)
    device = choose_device("cpu", precision=precision, force_precision=force, cpu_flags=flags)
    assert (device.dtype, device.refused_precision) == (dtype, refused)


def test_without_cpu_flags_torch_capability_decides():
    assert native_cpu_precisions(None, "AVX2") == set()
    assert native_cpu_precisions(None, "DEFAULT") == set()
    assert native_cpu_precisions(None, "AVX512") == {"bf16", "half"}  # cannot tell: trusted


def test_this_machine_falls_back_exactly_when_it_lacks_native_bf16_and_says_so(start_context):
    native = "bf16" in native_cpu_precisions(read_cpu_flags(), torch.backends.cpu.get_cpu_capability())
    context = start_context("--device", "cpu", "--precision", "bf16")
    assert context.device.dtype == (torch.bfloat16 if native else torch.float32)
    notices = context.memory_report()["notices"]
    assert bool(notices) != native
    if not native:
        assert "--force-precision" in notices[0] and "fp32" in notices[0]
    forced = start_context("--device", "cpu", "--precision", "bf16", "--force-precision")
    assert forced.device.dtype == torch.bfloat16 and not forced.memory_report()["notices"]


def test_a_chosen_checkpoint_that_is_gone_is_replaced_by_the_first_found_and_the_choice_is_kept(
        data_dir, start_context, serve_app):
    import httpx

    (data_dir / "config.json").write_text(json.dumps({"sd_model_checkpoint": "gone.safetensors"}), encoding="utf-8")
    context = start_context()
    context.startup()
    assert context.cache.current.info.name == "tiny-sd1.safetensors"
    notice = " ".join(context.notices.texts())
    assert "gone.safetensors" in notice and "tiny-sd1.safetensors" in notice
    with httpx.Client(base_url=serve_app(context) + "/sdapi/v1", timeout=120) as api:
        body = {"prompt": "a red bicycle", "steps": 2, "width": 64, "height": 64}
        assert api.post("/txt2img", json=body).status_code == 200
        assert "gone.safetensors" in " ".join(api.get("/memory").json()["notices"])
        saved = json.loads((data_dir / "config.json").read_text(encoding="utf-8"))
        assert saved["sd_model_checkpoint"] == "gone.safetensors"  # the user's choice is not overwritten

        folder = data_dir / "models" / "Stable-diffusion"
        shutil.copyfile(folder / "tiny-sd1.safetensors", folder / "gone.safetensors")  # the file is back
        assert api.post("/refresh-checkpoints").status_code == 200
        assert api.post("/txt2img", json=body).status_code == 200
        assert context.cache.current.info.name == "gone.safetensors"
        assert api.get("/memory").json()["notices"] == []
