"""Flags people type (A1111 names) and settings that persist in config.json."""
import json

import pytest

from paragoger.cli import parse_args
from paragoger.errors import UserError
from paragoger.paths import Paths
from paragoger.settings import Settings


def test_defaults_serve_on_localhost_7860():
    options = parse_args([], env={})
    assert (options.host, options.port, options.share) == ("127.0.0.1", 7860, False)


def test_listen_binds_all_interfaces_and_auth_pairs_are_parsed():
    options = parse_args(["--listen", "--port", "9000", "--gradio-auth", "ann:pw1,bob:p:w2"], env={})
    assert options.host == "0.0.0.0" and options.port == 9000
    assert options.gradio_auth == (("ann", "pw1"), ("bob", "p:w2"))


def test_commandline_args_from_webui_user_are_honoured_before_argv():
    options = parse_args(["--port", "7000"], env={"COMMANDLINE_ARGS": "--listen --port 7100 --no-half"})
    assert options.host == "0.0.0.0" and options.port == 7000 and options.precision == "full"


def test_unknown_flags_from_a1111_do_not_stop_the_app():
    options = parse_args(["--opt-sdp-attention", "--theme", "dark"], env={})
    assert options.port == 7860


def test_ckpt_dir_points_at_an_existing_install_before_the_default(tmp_path):
    old = tmp_path / "a1111" / "models" / "Stable-diffusion"
    paths = Paths.build(data_dir=tmp_path / "app", ckpt_dirs=[old])
    assert paths.checkpoint_dirs == (old.resolve(), (tmp_path / "app" / "models" / "Stable-diffusion").resolve())


def test_data_dir_gives_a1111_layout(tmp_path):
    paths = Paths.build(data_dir=tmp_path)
    assert paths.vae_dirs[-1] == tmp_path.resolve() / "models" / "VAE"
    assert paths.outputs_dir == tmp_path.resolve() / "outputs"
    assert paths.config_file == tmp_path.resolve() / "config.json"


def test_settings_persist_in_config_json_and_keep_unknown_keys(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"samples_format": "png", "some_extension_key": 3}))
    settings = Settings.load(path)
    settings.update({"samples_format": "jpg", "sd_checkpoints_limit": "2"})
    saved = json.loads(path.read_text())
    assert saved["samples_format"] == "jpg" and saved["sd_checkpoints_limit"] == 2
    assert saved["some_extension_key"] == 3
    assert Settings.load(path)["samples_format"] == "jpg"


def test_bad_setting_value_is_refused_with_a_reason(tmp_path):
    settings = Settings.load(tmp_path / "config.json")
    with pytest.raises(UserError, match="samples_format"):
        settings.update({"samples_format": "bmp"})
    with pytest.raises(UserError, match="Unknown setting"):
        settings.update({"no_such_setting": 1})
    assert not (tmp_path / "config.json").exists()


def test_override_settings_apply_to_one_copy_and_never_leak():
    settings = Settings()
    override = settings.with_overrides({"CLIP_stop_at_last_layers": 2, "not_a_setting": 5})
    assert override["CLIP_stop_at_last_layers"] == 2
    assert settings["CLIP_stop_at_last_layers"] == 1


def test_corrupt_config_json_starts_with_defaults(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    assert Settings.load(path)["samples_format"] == "png"
