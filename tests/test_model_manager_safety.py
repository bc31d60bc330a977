"""Files that are not what they claim: malicious pickles never run, broken files give a clear message."""
from __future__ import annotations

import builtins
import os
import pickle
import random
import shutil
import subprocess

import pytest
import torch
from safetensors.torch import save_file

from paragoger.errors import ModelLoadError
from paragoger.model_manager.components import CheckpointInfo
from paragoger.model_manager.loader import load_checkpoint
from paragoger.model_manager.safe_pickle import load_ckpt
from tests.fixtures.checkpoints import lightning_checkpoint, save_like_2022


def info_for(path) -> CheckpointInfo:
    return CheckpointInfo(path=path, name=path.name, model_name=path.stem)


class RunsWhenUnpickled:
    """Unpickling this calls ``function(*args)``: the classic malicious-checkpoint payload."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def payloads(marker):
    return {
        "os.system": RunsWhenUnpickled(os.system, f"touch {marker}"),
        "builtins.eval": RunsWhenUnpickled(builtins.eval, f"open({str(marker)!r}, 'w').write('pwned')"),
        "builtins.exec": RunsWhenUnpickled(builtins.exec, f"open({str(marker)!r}, 'w').write('pwned')"),
        "subprocess.Popen": RunsWhenUnpickled(subprocess.Popen, ["touch", str(marker)]),
    }


def load_and_expect_refusal(path, marker):
    with pytest.raises(ModelLoadError) as error:
        load_checkpoint(info_for(path))
    assert not marker.exists(), "the pickle's code ran"
    assert error.value.key == "pickle_refused"
    return error.value


@pytest.mark.parametrize("what", ["os.system", "builtins.eval", "builtins.exec", "subprocess.Popen"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, what):
    marker = tmp_path / "pwned"
    payload = payloads(marker)[what]
    # The payload is real: plain pickle would run it.
    result = pickle.loads(pickle.dumps(payload, protocol=2))
    if isinstance(result, subprocess.Popen):
        result.wait()
    assert marker.exists()
    marker.unlink()
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "callbacks": payload}, path)

    error = load_and_expect_refusal(path, marker)

    assert error.params["what"].split(".")[-1] in what  # os.system is pickled as posix.system
    assert "model.ckpt" in str(error) and "prefer .safetensors" in str(error)


def test_malicious_object_hidden_in_a_real_looking_checkpoint_is_refused(tmp_path):
    """Everything else in the file is allowed (Lightning callback, numpy step): the one bad global is named."""
    marker = tmp_path / "pwned"
    checkpoint = lightning_checkpoint({"model.diffusion_model.w": torch.zeros(2)})
    checkpoint["optimizer_states"] = [payloads(marker)["builtins.eval"]]
    save_like_2022(checkpoint, tmp_path / "model.ckpt")

    error = load_and_expect_refusal(tmp_path / "model.ckpt", marker)

    assert error.params["what"] == "builtins.eval"


@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_plain_pickle_file_is_refused_and_never_runs(tmp_path, protocol):
    """Very old .ckpt files are bare pickles, not zip archives; they go through the same restricted reader."""
    marker = tmp_path / "pwned"
    (tmp_path / "old.ckpt").write_bytes(pickle.dumps(payloads(marker)["os.system"], protocol=protocol))

    load_and_expect_refusal(tmp_path / "old.ckpt", marker)


def test_ckpt_from_2022_holds_what_real_files_hold(tiny_model_file):
    loaded = load_ckpt(tiny_model_file("sd1", "ckpt"))

    assert type(loaded["global_step"]).__name__ == "int64" and int(loaded["global_step"]) == 470000
    assert loaded["pytorch-lightning_version"] == "1.4.2"
    (callback,) = loaded["callbacks"]
    assert callback.__name__ == "LightningModelCheckpoint"  # the inert stand-in, not Lightning's class
    assert any(k.startswith("model_ema.") for k in loaded["state_dict"])


def test_lightning_callback_instances_also_load(tmp_path):
    """Some files pickle a ModelCheckpoint instance (with its attributes), not just the class."""
    from paragoger.model_manager.safe_pickle import LightningModelCheckpoint

    callback = LightningModelCheckpoint()
    callback.monitor, callback.save_top_k = "val/loss", 3
    state = lightning_checkpoint({"w": torch.ones(2)})
    state["callbacks"] = {"ModelCheckpoint": callback}
    save_like_2022(state, tmp_path / "x.ckpt")

    loaded = load_ckpt(tmp_path / "x.ckpt")

    assert loaded["callbacks"]["ModelCheckpoint"].save_top_k == 3


@pytest.mark.parametrize("fraction", [0.5, 0.999])
def test_truncated_safetensors_gives_a_clear_error(tmp_path, tiny_sd1_file, fraction):
    path = tmp_path / "cut.safetensors"
    data = tiny_sd1_file.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])

    with pytest.raises(ModelLoadError) as error:
        load_checkpoint(info_for(path))

    assert error.value.key == "checkpoint_corrupt"
    assert "cut.safetensors" in str(error.value) and "truncated" in str(error.value)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.999])
def test_truncated_ckpt_gives_a_clear_error(tmp_path, tiny_model_file, fraction):
    path = tmp_path / "cut.ckpt"
    data = tiny_model_file("sd1", "ckpt").read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])

    with pytest.raises(ModelLoadError) as error:
        load_checkpoint(info_for(path))

    assert error.value.key == "checkpoint_corrupt"


@pytest.mark.parametrize("content", [b"", b"not a model at all",
                                     *(random.Random(seed).randbytes(4096) for seed in range(8))])
@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_files_that_are_not_models_give_a_clear_error(tmp_path, content, suffix):
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(content)

    with pytest.raises(ModelLoadError) as error:
        load_checkpoint(info_for(path))

    assert error.value.key in ("checkpoint_corrupt", "checkpoint_unknown_architecture")
    assert "junk" in str(error.value)


def test_a_lora_is_not_mistaken_for_a_checkpoint(tmp_path):
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320)},
              str(tmp_path / "style.safetensors"))

    with pytest.raises(ModelLoadError) as error:
        load_checkpoint(info_for(tmp_path / "style.safetensors"))

    assert error.value.key == "checkpoint_unknown_architecture"
    assert "SD 1.x, SD 2.x, SDXL" in str(error.value)


def test_a_damaged_checkpoint_with_missing_weights_says_which_part(tmp_path, tiny_sd1_file):
    from safetensors.torch import load_file

    state = load_file(str(tiny_sd1_file))
    del state["model.diffusion_model.out.2.weight"]
    save_file(state, str(tmp_path / "damaged.safetensors"))

    with pytest.raises(ModelLoadError) as error:
        load_checkpoint(info_for(tmp_path / "damaged.safetensors"))

    assert error.value.key in ("checkpoint_incomplete", "checkpoint_unknown_architecture")


def test_a_missing_file_is_reported(tmp_path):
    with pytest.raises(ModelLoadError) as error:
        load_checkpoint(info_for(tmp_path / "gone.safetensors"))
    assert error.value.key == "checkpoint_not_found"


def test_copying_a_ckpt_keeps_it_loadable(tmp_path, tiny_model_file):
    """The archive's inner folder is named after the original file; renamed copies must still load."""
    path = tmp_path / "renamed.ckpt"
    shutil.copyfile(tiny_model_file("sd1", "ckpt"), path)

    assert load_checkpoint(info_for(path)).family == "sd1"
