"""The page runs the same check as the API before queueing, and shows the app's notices on the model status line."""
import json

from tests.conftest import set_small_generation


def test_the_page_shows_the_fallback_checkpoint_notice_and_refuses_a_prompt_over_the_limit(
        data_dir, start_context, open_page):
    from playwright.sync_api import expect

    (data_dir / "config.json").write_text(json.dumps({"sd_model_checkpoint": "gone.safetensors",
                                                      "limit_prompt_tokens": 80}), encoding="utf-8")
    context = start_context()
    page = open_page(context)
    status = page.locator("#model_status")
    expect(status).to_contain_text("gone.safetensors", timeout=30_000)
    expect(status).to_contain_text("tiny-sd1.safetensors")

    set_small_generation(page, "txt2img", steps=2)
    page.locator("#txt2img_prompt textarea").fill("red " * 81)
    page.click("#txt2img_generate")
    expect(page.locator("#txt2img_error")).to_contain_text("81 tokens", timeout=30_000)
    expect(page.locator("#txt2img_error")).to_contain_text("limit_prompt_tokens")
    assert [job.kind for job in context.queue.finished()] == ["load-model"]  # no generation was queued

    page.locator("#txt2img_prompt textarea").fill("red " * 80)
    page.click("#txt2img_generate")
    expect(page.locator("#txt2img_html_info")).to_contain_text("Steps: 2", timeout=60_000)
    assert context.settings["sd_model_checkpoint"] == "gone.safetensors"
