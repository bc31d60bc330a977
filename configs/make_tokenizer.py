"""Regenerate configs/tokenizers/clip/{vocab.json,merges.txt} from the BPE file bundled with open-clip-torch.

    venv/bin/python configs/make_tokenizer.py

How the numbering is derived is explained in paragoger/model_manager/clip_bpe.py. Every family's tokenizer folder
under configs/diffusers holds only tokenizer_config.json (its pad token differs: SD 1.x pads with <|endoftext|>,
SD 2.x and SDXL's tokenizer_2 pad with "!"); the vocabulary files live once, here.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from open_clip.tokenizer import default_bpe  # noqa: E402

from paragoger.model_manager.clip_bpe import write_tokenizer_files  # noqa: E402

if __name__ == "__main__":
    target = ROOT / "configs" / "tokenizers" / "clip"
    write_tokenizer_files(Path(default_bpe()), target)
    print(f"wrote {target}")
