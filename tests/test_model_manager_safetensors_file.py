"""safetensors files are read in one place (model_manager/safetensors_file.py), through the safetensors library:
header, tensors in the process's own memory, where the data begins, and one clear reason when a file is broken."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from paragoger.model_manager.safetensors_file import SafetensorsReadError, data_start, read_header, read_tensors


@pytest.fixture
def small_file(tmp_path):
    path = tmp_path / "small.safetensors"
    save_file({"b": torch.arange(6, dtype=torch.float32).reshape(2, 3), "a": torch.ones(4, dtype=torch.float16),
               "model_ema.b": torch.zeros(2)}, str(path), metadata={"format": "pt", "ss_output_name": "shiny"})
    return path


def test_header_gives_shapes_dtypes_and_metadata_in_file_order(small_file):
    header = read_header(small_file)

    assert header.shapes == {"b": (2, 3), "model_ema.b": (2,), "a": (4,)} and header.keys == ["b", "model_ema.b", "a"]
    assert header.dtypes == {"b": "F32", "model_ema.b": "F32", "a": "F16"}
    assert header.metadata == {"format": "pt", "ss_output_name": "shiny"}


def test_tensors_are_the_process_own_memory_and_keep_leaves_some_unread(small_file):
    tensors, metadata = read_tensors(small_file, keep=lambda key: not key.startswith("model_ema."))
    small_file.write_bytes(b"")  # the file going away changes nothing already read

    assert set(tensors) == {"a", "b"} and metadata["ss_output_name"] == "shiny"
    assert torch.equal(tensors["b"], torch.arange(6, dtype=torch.float32).reshape(2, 3))
    assert tensors["a"].dtype == torch.float16
    tensors["b"][0, 0] = 7  # writable


def test_data_start_is_where_the_tensor_bytes_begin(small_file):
    data = small_file.read_bytes()
    start = data_start(small_file)

    assert start == 8 + int.from_bytes(data[:8], "little")
    assert len(data) - start == 6 * 4 + 4 * 2 + 2 * 4


@pytest.mark.parametrize("cut", [0, 5, 20, -3])
def test_a_cut_or_foreign_file_gives_one_line_saying_why(small_file, cut):
    data = small_file.read_bytes()
    small_file.write_bytes(data[:cut] if cut else b"not a safetensors file")

    for reader in (read_header, read_tensors, data_start):
        with pytest.raises(SafetensorsReadError) as error:
            reader(small_file)
        assert isinstance(error.value, ValueError) and str(error.value) and "\n" not in str(error.value)


def test_a_missing_file_is_a_read_error_too(tmp_path):
    with pytest.raises(SafetensorsReadError):
        read_header(tmp_path / "gone.safetensors")
