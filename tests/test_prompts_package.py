"""The prompts package: its public names, and that it stays pure text."""

import subprocess
import sys

import paragoger.prompts as prompts


def test_public_api_is_reexported():
    for name in ("parse_attention", "prompt_schedule", "split_and", "extract_extra_networks", "StyleStore"):
        assert callable(getattr(prompts, name))


def test_importing_prompts_loads_no_torch():
    code = "import sys, paragoger.prompts; sys.exit('torch' in sys.modules or 'numpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a1111_order_end_to_end(tmp_path):
    """styles -> comments -> extra networks -> AND -> schedule -> attention, on one prompt."""
    styles_csv = tmp_path / "styles.csv"
    styles_csv.write_text("name,prompt,negative_prompt\nHQ,(masterpiece:1.2),\n", encoding="utf-8")
    store = prompts.StyleStore(styles_csv)

    prompt = store.apply("a [cat:dog:2] <lora:fur:0.7> # draft\nAND sky:0.5", ["HQ"])
    assert prompt == "a [cat:dog:2] <lora:fur:0.7> # draft\nAND sky:0.5, (masterpiece:1.2)"
    prompt = prompts.strip_comments(prompt)
    assert prompt == "a [cat:dog:2] <lora:fur:0.7> \nAND sky:0.5, (masterpiece:1.2)"
    prompt, calls = prompts.extract_extra_networks(prompt)
    assert [(call.name, prompts.lora_weights(call)) for call in calls] == [("fur", (0.7, 0.7))]
    parts = prompts.split_and(prompt)
    assert parts == [("a [cat:dog:2]", 1.0), (" sky:0.5, (masterpiece:1.2)", 1.0)]
    schedule = prompts.prompt_schedule(parts[0][0], 4)
    assert schedule == [[2, "a cat"], [4, "a dog"]]
    assert prompts.parse_attention(parts[1][0]) == [[" sky:0.5, ", 1.0], ["masterpiece", 1.2]]
