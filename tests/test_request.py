"""Planning a request without running anything: `llava-video inspect`'s source."""

from llava_video_app.request import inspect_request


def test_inspect_plans_the_7b_input_without_loading_anything(sample_video):
    plan = inspect_request(sample_video, "What happens?", model="lmms-lab/LLaVA-Video-7B-Qwen2", frames=64)
    assert len(plan["frame_indices"]) == len(plan["timestamps"]) == 64
    assert plan["visual_tokens"] == 64 * 210 == 13_440
    assert plan["newline_position"] == "grid" and plan["pool_mode"] == "bilinear"
    assert plan["prompt"].startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>")
