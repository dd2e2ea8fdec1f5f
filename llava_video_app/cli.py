"""`llava-video`: the same engine as the app, from a terminal. Its `app` command is also `python app.py`
(`app_main`), so the app's flags are defined once, here.

User mistakes (a bad file, an unknown question type, a missing model) end with one readable line on
stderr and a non-zero exit code, never a traceback. A request's settings are checked by the API's
function (request.check_request), so both refuse the same values with the same words: the numeric
flags take any number and leave the checking to it (--frames 2.7 is refused, not rounded).
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import typer

from .config import CUDA_DEFAULT_QUANT, QUANTIZATIONS, AppConfig, keep_start_up_offline
from .synth.plan import SynthOptions

if TYPE_CHECKING:
    from .request import RequestSettings

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Ask LLaVA-Video about videos, caption them, and make LLaVA-Video-178K-style data.")

EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130

# Options shared by the commands that run the model (None = "not given": config/env decide).
ModelOpt = typer.Option(None, "--model", help="Hub id or local folder (default: LLaVA-Video-7B-Qwen2 on CUDA, "
                                              "llava-onevision-qwen2-0.5b-ov on CPU).")
QuantOpt = typer.Option(None, "--quant", help=f"One of {', '.join(QUANTIZATIONS)} (default: {CUDA_DEFAULT_QUANT} "
                        "on CUDA, fp32 on CPU).")
DeviceOpt = typer.Option(None, "--device", help="cuda, cuda:N or cpu.")
# Numbers without typer's own min/max: request.check_request (the API's check) says what is wrong.
# Defaults in the help come from AppConfig, so --help cannot drift from what runs (tests/test_readme.py
# holds the README to the same words).
FramesOpt = typer.Option(None, "--frames", metavar="INTEGER", help=f"Frames sampled uniformly (default "
                         f"{AppConfig.frames}, at most the app's max_frames, {AppConfig.max_frames} unless "
                         "LLAVA_VIDEO_MAX_FRAMES says otherwise).")
StartOpt = typer.Option(None, "--start", help="Trim start, seconds.")
EndOpt = typer.Option(None, "--end", help="Trim end, seconds.")
MaxTokensOpt = typer.Option(None, "--max-new-tokens", metavar="INTEGER", help=f"Longest answer, in tokens (default "
                            f"{AppConfig.max_new_tokens}, at most max_new_tokens_limit, "
                            f"{AppConfig.max_new_tokens_limit}).")
TemperatureOpt = typer.Option(None, "--temperature", help="0 = greedy (default), at most 2.")
TopPOpt = typer.Option(None, "--top-p", help="Nucleus sampling threshold, in (0, 1].")
SeedOpt = typer.Option(None, "--seed", metavar="INTEGER", help="The sampler's seed (with --temperature > 0): the same "
                       "seed and settings give the same answer (default: a random one, printed after the answer).")
PoolOpt = typer.Option(None, "--pool-mode", help="Override the checkpoint's mm_spatial_pool_mode (average, max, bilinear).")
CompileOpt = typer.Option(None, "--compile/--no-compile", help="Decode through torch.compile over a static KV cache "
                          "(default on a CUDA GPU: several times the tokens/s after a one-off compile, cached on disk).")


def fail(message: str, code: int = EXIT_USER_ERROR) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors():
    """Exceptions that are the user's input (or installation), reported as one line."""
    from .checkpoint import CheckpointError
    from .transformers_support import UnsupportedTransformersError
    from .video import VideoError

    return (VideoError, CheckpointError, ValueError, FileNotFoundError, UnsupportedTransformersError)


def require_supported_transformers() -> None:
    """Before a command that runs the model does anything: one line and exit 1 under a transformers
    outside the supported range (transformers_support.SPEC), rather than wrong answers or a traceback."""
    from .transformers_support import UnsupportedTransformersError, check_transformers

    try:
        check_transformers()
    except UnsupportedTransformersError as err:
        fail(str(err))


def load_config(**overrides) -> AppConfig:
    try:
        config = AppConfig.from_env().with_overrides(**overrides)
    except (ValueError, TypeError) as err:  # a bad LLAVA_VIDEO_* value or flag (e.g. --quant)
        fail(str(err))
    return config


def _progress(message: str) -> None:
    typer.echo(message, err=True)


def _resolve_question(question: Optional[str], question_type: Optional[str], config: AppConfig) -> str:
    from .prompts import question_type as lookup
    from .request import check_question

    if question is not None and question_type:
        fail("give either a question or --type, not both")
    if question_type:
        return lookup(question_type).preset
    if question is None:
        fail('give a question, e.g. llava-video ask video.mp4 "What happens?", or --type "Camera Direction"')
    return check_question(question, config.max_question_chars)  # the API's check and words


def _checked_request(config: AppConfig, *, frames: Optional[float], start: Optional[float], end: Optional[float],
                     max_new_tokens: Optional[float] = None, temperature: Optional[float] = None,
                     top_p: Optional[float] = None, seed: Optional[float] = None) -> tuple[AppConfig, "RequestSettings"]:
    """The request's settings checked as the API checks them (one line and exit 1 if not), and the
    config they make (the engine warms up for that many frames and tokens)."""
    from .request import check_request

    try:
        request = check_request(config, frames=frames, start=start, end=end, max_new_tokens=max_new_tokens,
                                temperature=temperature, top_p=top_p, seed=seed)
    except ValueError as err:
        fail(str(err))
    generation = request.generation
    return config.with_overrides(frames=request.frames, max_new_tokens=generation.max_new_tokens,
                                 temperature=generation.temperature, top_p=generation.top_p,
                                 seed=generation.seed), request


def _run(config: AppConfig, video: Path, question: str, request: "RequestSettings") -> None:
    from .engine import Engine
    from .video import plan_clip

    require_supported_transformers()
    stop = threading.Event()
    frames, start, end = request.frames, request.start, request.end
    try:
        plan_clip(video, num_frames=frames, start=start, end=end)  # a bad file or range fails here,
        # before minutes of model loading
        engine = Engine.from_config(config, progress=_progress)
        engine.check_request(video, question, frames=frames, start=start, end=end,
                             max_new_tokens=request.generation.max_new_tokens)  # the token budget, before decoding
        clip = engine.load_clip(video, frames=frames, start=start, end=end)
        for chunk in engine.stream(clip, question, settings=request.generation, stop=stop):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except user_errors() as err:
        fail(str(err))
    except KeyboardInterrupt:
        stop.set()
        typer.echo("\n[stopped]", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    sys.stdout.write("\n")
    stats = engine.last_stats
    if stats is not None:
        vram = f", peak VRAM {stats.peak_vram_gib:.2f} GiB" if stats.peak_vram_gib is not None else ""
        typer.echo(f"[{stats.visual_tokens} visual tokens, first token {stats.time_to_first_token_s:.2f}s, "
                   f"{stats.new_tokens} tokens at {stats.tokens_per_s:.1f} tok/s{vram}, seed {stats.seed}]", err=True)


# The executor flags of every command that runs over many videos or questions (synth, eval, ask/caption --jsonl).
EXECUTORS = ("local", "ray")
ExecutorOpt = typer.Option("local", "--executor", help="local: one after another in this process; ray: actor "
                           "workers on Ray, one engine each (pip install -e '.[ray]').")
AddressOpt = typer.Option(None, "--address", help="Ray: join this cluster (e.g. ray://head:10001 or auto); default: "
                          "start a local Ray.")
WorkersOpt = typer.Option(None, "--workers", min=1, help="Ray: workers, one engine each (default: one per GPU, or "
                          "one per CPU without GPUs).")
GpusPerWorkerOpt = typer.Option(None, "--gpus-per-worker", min=0.0, help="Ray: GPUs per worker (default 1 with GPUs; "
                                "0 = the model on CPU).")


def _check_executor(executor: str, address: Optional[str], workers: Optional[int],
                    gpus_per_worker: Optional[float]) -> None:
    """One line and exit 1 for an unknown executor, or Ray's flags without it."""
    if executor not in EXECUTORS:
        fail(f"--executor must be {' or '.join(EXECUTORS)}, not {executor!r}")
    if executor != "ray" and (address, workers, gpus_per_worker) != (None, None, None):
        fail("--address, --workers and --gpus-per-worker need --executor ray")


JsonlOpt = typer.Option(None, "--jsonl", help="Answer for every video of VIDEO (a file, folder, glob, manifest or "
                        "URL, as synth takes) and append one JSON record per video, with its provenance, to this "
                        "file; a rerun skips the videos already in it.")


def _run_batch(config: AppConfig, spec: str, question: str, request: "RequestSettings", out: Path,
               ray: Optional[dict] = None) -> None:
    """--jsonl: every video of `spec` into `out`, here or (`ray`: ask_many_ray's cluster flags) on Ray."""
    from .batch_ask import ask_many
    from .engine import Engine
    from .synth.sources import list_videos

    stop = threading.Event()
    try:
        videos = list_videos(spec)  # a bad path fails here, before minutes of model loading
        if not len(videos):
            fail(f"no videos in {spec}")
        _progress(f"{len(videos)} video(s) -> {out}")
        if ray is not None:
            from .batch_ask_ray import ask_many_ray

            summary = ask_many_ray(spec, question, request, out, config, progress=_progress, echo=_progress, **ray)
        else:
            engine = Engine.from_config(config, progress=_progress)
            summary = ask_many(engine, spec, question, request, out, progress=_progress, stop=stop)
    except user_errors() as err:
        fail(str(err))
    except KeyboardInterrupt:
        stop.set()
        typer.echo("\n[stopped: run the same command again to resume]", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    _progress(f"answered {summary.answered}, already in {out.name} {summary.skipped}, failed {len(summary.failed)}")
    if summary.failed:
        raise typer.Exit(EXIT_USER_ERROR)


def _ask_or_batch(config: AppConfig, video: Path, question: str, request: "RequestSettings",
                  jsonl: Optional[Path], executor: str = "local", address: Optional[str] = None,
                  workers: Optional[int] = None, gpus_per_worker: Optional[float] = None) -> None:
    _check_executor(executor, address, workers, gpus_per_worker)
    if executor == "ray" and jsonl is None:
        fail("--executor ray answers many videos into a file: add --jsonl OUT.jsonl")
    if jsonl is not None:
        ray = dict(address=address, workers=workers, gpus_per_worker=gpus_per_worker) if executor == "ray" else None
        _run_batch(config, str(video), question, request, jsonl, ray)
    elif video.is_dir() or (not video.exists() and any(c in str(video) for c in "*?[")):
        fail(f"{video} names several videos: add --jsonl OUT.jsonl to answer each into a file")
    else:
        _run(config, video, question, request)


@app.command()
def ask(
    video: Path = typer.Argument(..., help="Video file (with --jsonl: a folder, glob, manifest or URL too)."),
    question: Optional[str] = typer.Argument(None, help="Your question."),
    question_type: Optional[str] = typer.Option(None, "--type", help="Ask a LLaVA-Video question type's preset question (phrased to fit any video)."),
    model: Optional[str] = ModelOpt, quant: Optional[str] = QuantOpt, device: Optional[str] = DeviceOpt,
    frames: Optional[float] = FramesOpt, start: Optional[float] = StartOpt, end: Optional[float] = EndOpt,
    max_new_tokens: Optional[float] = MaxTokensOpt, temperature: Optional[float] = TemperatureOpt,
    top_p: Optional[float] = TopPOpt, pool_mode: Optional[str] = PoolOpt, compile: Optional[bool] = CompileOpt,
    seed: Optional[float] = SeedOpt, jsonl: Optional[Path] = JsonlOpt,
    executor: str = ExecutorOpt, address: Optional[str] = AddressOpt, workers: Optional[int] = WorkersOpt,
    gpus_per_worker: Optional[float] = GpusPerWorkerOpt,
) -> None:
    """Ask a question about a video (the answer streams to stdout), or about many (--jsonl)."""
    config = load_config(model=model, quant=quant, device=device, pool_mode=pool_mode, compile=compile)
    try:
        text = _resolve_question(question, question_type, config)
    except ValueError as err:
        fail(str(err))
    config, request = _checked_request(config, frames=frames, start=start, end=end, max_new_tokens=max_new_tokens,
                                       temperature=temperature, top_p=top_p, seed=seed)
    _ask_or_batch(config, video, text, request, jsonl, executor, address, workers, gpus_per_worker)


@app.command()
def caption(
    video: Path = typer.Argument(..., help="Video file (with --jsonl: a folder, glob, manifest or URL too)."),
    model: Optional[str] = ModelOpt, quant: Optional[str] = QuantOpt, device: Optional[str] = DeviceOpt,
    frames: Optional[float] = FramesOpt, start: Optional[float] = StartOpt, end: Optional[float] = EndOpt,
    max_new_tokens: Optional[float] = MaxTokensOpt, temperature: Optional[float] = TemperatureOpt,
    top_p: Optional[float] = TopPOpt, pool_mode: Optional[str] = PoolOpt, compile: Optional[bool] = CompileOpt,
    seed: Optional[float] = SeedOpt, jsonl: Optional[Path] = JsonlOpt,
    executor: str = ExecutorOpt, address: Optional[str] = AddressOpt, workers: Optional[int] = WorkersOpt,
    gpus_per_worker: Optional[float] = GpusPerWorkerOpt,
) -> None:
    """Detailed caption of a video (the model card's prompt), or of many (--jsonl)."""
    from .prompts import CAPTION_QUESTION

    config = load_config(model=model, quant=quant, device=device, pool_mode=pool_mode, compile=compile)
    config, request = _checked_request(config, frames=frames, start=start, end=end, max_new_tokens=max_new_tokens,
                                       temperature=temperature, top_p=top_p, seed=seed)
    _ask_or_batch(config, video, CAPTION_QUESTION, request, jsonl, executor, address, workers, gpus_per_worker)


@app.command()
def inspect(
    video: Path = typer.Argument(..., help="Video file."),
    question: Optional[str] = typer.Argument(None, help="Question (default: the detailed-caption prompt)."),
    question_type: Optional[str] = typer.Option(None, "--type"),
    model: Optional[str] = ModelOpt, quant: Optional[str] = QuantOpt, device: Optional[str] = DeviceOpt,
    frames: Optional[float] = FramesOpt, start: Optional[float] = StartOpt,
    end: Optional[float] = EndOpt, pool_mode: Optional[str] = PoolOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON object instead of text."),
) -> None:
    """Show what the model would see, without running it: frames, timestamps, prompt, visual tokens,
    and the language model's effective settings (rotary base, context length, dtype)."""
    from .prompts import CAPTION_QUESTION
    from .request import inspect_request

    config = load_config(model=model, quant=quant, device=device, pool_mode=pool_mode)
    config, request = _checked_request(config, frames=frames, start=start, end=end)
    try:
        text = _resolve_question(question, question_type, config) if (question or question_type) else CAPTION_QUESTION
        resolved = config.resolved()
        plan = inspect_request(video, text, model=resolved.model, frames=request.frames, start=request.start,
                               end=request.end, pool_mode=config.pool_mode, quant=resolved.quant,
                               device=resolved.device, time_instruction=config.time_instruction)
    except user_errors() as err:
        fail(str(err))
    if as_json:
        typer.echo(json.dumps(plan, indent=2))
        return
    n = len(plan["frame_indices"])
    typer.echo(f"video      {plan['video']}  ({plan['duration']:.2f} s at {plan['fps']:.3f} fps)")
    if plan.get("timing"):
        typer.echo(f"timing     {plan['timing']}")
    typer.echo(f"model      {plan['model']}")
    typer.echo(f"frames     {n}: indices {plan['frame_indices']}")
    typer.echo(f"timestamps {', '.join(f'{t:.2f}s' for t in plan['timestamps'])}")
    typer.echo(f"visual     {plan['visual_tokens']} tokens = {n} frames x {plan['tokens_per_frame']} "
               f"(newline {plan['newline_position']}, pool {plan['pool_mode']})")
    lm = plan["language_model"]
    if lm is None:
        typer.echo("language   settings unknown until the checkpoint's config.json is downloaded")
    else:
        scaling = f", scaling {lm['rope_type']} {lm['rope_scaling']}" if lm["rope_scaling"] else ""
        window = f", sliding window {lm['sliding_window']}" if lm["sliding_window"] else ""
        typer.echo(f"language   rotary base {lm['rope_theta']:g}{scaling}, context {lm['context_length']} tokens{window}, "
                   f"RMSNorm eps {lm['rms_norm_eps']:g}, {lm['layers']} layers x {lm['hidden_size']}, "
                   f"{lm['attention_heads']}/{lm['kv_heads']} heads, {lm['quant']} ({lm['dtype']})")
    typer.echo("prompt:")
    typer.echo(plan["prompt"])


VariantOpt = typer.Option(..., "--variant", "-V", help="A variant of the settings, e.g. 'frames=16', 'pool=max, "
                          "route=exact', 'temperature=0.7, seed=3', 'quant=bf16', 'as asked'; 1 to 4 of them.")


@app.command()
def compare(
    video: Path = typer.Argument(..., help="Video file."),
    question: Optional[str] = typer.Argument(None, help="Your question."),
    variant: list[str] = VariantOpt,
    question_type: Optional[str] = typer.Option(None, "--type", help="Ask a question type's preset question."),
    model: Optional[str] = ModelOpt, quant: Optional[str] = QuantOpt, device: Optional[str] = DeviceOpt,
    frames: Optional[float] = FramesOpt, start: Optional[float] = StartOpt, end: Optional[float] = EndOpt,
    max_new_tokens: Optional[float] = MaxTokensOpt, temperature: Optional[float] = TemperatureOpt,
    top_p: Optional[float] = TopPOpt, pool_mode: Optional[str] = PoolOpt, compile: Optional[bool] = CompileOpt,
    seed: Optional[float] = SeedOpt,
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the answers with their provenance "
                                            "(the app's conversation export, one conversation per variant) here."),
) -> None:
    """Ask the same question under 1-4 variants of the settings: each answer, what it reused from the
    caches, and the settings and inputs in which the answers differ."""
    from . import compare as comparing
    from . import transcript
    from .engine import Engine
    from .second_model import SecondModel
    from .video import plan_clip

    config = load_config(model=model, quant=quant, device=device, pool_mode=pool_mode, compile=compile)
    try:
        text = _resolve_question(question, question_type, config)
        variants = comparing.parse_variants(variant)
    except ValueError as err:
        fail(str(err))
    config, request = _checked_request(config, frames=frames, start=start, end=end, max_new_tokens=max_new_tokens,
                                       temperature=temperature, top_p=top_p, seed=seed)
    require_supported_transformers()
    stop = threading.Event()
    try:
        plan_clip(video, num_frames=request.frames, start=request.start, end=request.end)  # before the model loads
        engine = Engine.from_config(config, progress=_progress)
        shown, result = -1, None
        for item in comparing.compare(engine, video, text, variants, request, models=SecondModel(engine), stop=stop):
            if isinstance(item, comparing.Comparison):
                result = item
                continue
            if item.index != shown:
                sys.stdout.write(("\n" if shown >= 0 else "") + f"== {variants[item.index].label()} ==\n")
                shown, written = item.index, 0
            sys.stdout.write(item.text[written:])
            sys.stdout.flush()
            written = len(item.text)
    except user_errors() as err:
        fail(str(err))
    except KeyboardInterrupt:
        stop.set()
        typer.echo("\n[stopped]", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    sys.stdout.write("\n" if shown >= 0 else "")
    for answer in result.answers:
        typer.echo(f"[{answer.variant}: {answer.error or answer.reused_text()}]", err=True)
    typer.echo("differences:\n  " + "\n  ".join(comparing.differences_text(result)), err=True)
    if json_out is not None:
        json_out.write_text(transcript.to_json(transcript.export(comparing.as_conversations(result, video))),
                            encoding="utf-8")
    if any(a.error for a in result.answers):
        raise typer.Exit(EXIT_USER_ERROR)


@app.command("tiny-checkpoint")
def tiny_checkpoint(
    outdir: Path = typer.Argument(..., help="Folder to write the checkpoint into."),
    newline_position: str = typer.Option("grid", help="grid (LLaVA-Video) or one_token (OneVision)."),
    pool_mode: str = typer.Option("bilinear", help="bilinear, average or max."),
    seed: int = typer.Option(0),
) -> None:
    """Build a tiny random checkpoint in the original format: try the app and CLI without GPU or download."""
    from .tiny import build_tiny_checkpoint

    if newline_position not in ("grid", "frame", "one_token", "no_token"):
        fail("--newline-position must be grid, frame, one_token or no_token")
    if pool_mode not in ("bilinear", "average", "max"):
        fail("--pool-mode must be bilinear, average or max")
    path = build_tiny_checkpoint(outdir, newline_position=newline_position, pool_mode=pool_mode, seed=seed)
    typer.echo(f"wrote {path} (random weights: answers are gibberish). Try:\n"
               f"  llava-video ask VIDEO.mp4 'What happens?' --model {path} --quant fp32 --device cpu")


@app.command("app")
def app_command(
    model: Optional[str] = ModelOpt, quant: Optional[str] = QuantOpt, device: Optional[str] = DeviceOpt,
    frames: Optional[float] = FramesOpt, compile: Optional[bool] = CompileOpt,
    host: Optional[str] = typer.Option(None, "--host", help=f"Address to serve on (default {AppConfig.host}: "
                                       "this machine only)."),
    port: Optional[int] = typer.Option(None, "--port", help=f"Port (default {AppConfig.port})."),
    share: Optional[bool] = typer.Option(None, "--share", help="Also serve on a public gradio.live link."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", help="Where generated data is written."),
    mcp_server: Optional[bool] = typer.Option(None, "--mcp-server", help="Also serve the API as an MCP server "
                                              "(needs gradio's mcp extra)."),
) -> None:
    """The web app, as `python app.py`: upload a video, pick a task, watch the answer stream. Settings
    also come from LLAVA_VIDEO_* environment variables; flags win."""
    require_supported_transformers()
    from .web.app import run_app

    run_app(load_config(model=model, quant=quant, device=device, frames=frames, host=host, port=port, share=share,
                        output_dir=output_dir, mcp_server=mcp_server, compile=compile))


# --- synthetic data: `synth` and `dataset` (llava_video_app/synth/, dataset_report.py, output_folder.py) ---

@app.command()
def synth(
    path: str = typer.Argument(..., help="A video file, a folder (searched recursively), a glob, a manifest (.txt, "
                                         ".lst, .list: one path or URL per line), or a URL (s3://..., with fsspec)."),
    out: Path = typer.Option(..., "--out", help="Output folder: split files (.jsonl + exported .json), videos/ manifests."),
    types: Optional[list[str]] = typer.Option(None, "--types", help='Question types, comma-separated or repeated '
                                              '(default: all 16), e.g. --types "Temporal,Camera Direction".'),
    max_frames: int = typer.Option(180, "--max-frames", min=1, help="Cap on the 1-fps frames per video."),
    video_root: Optional[str] = typer.Option(None, "--video-root", help="Records' video paths are relative to "
                                             "this (default: PATH if a folder, else its folder)."),
    data_source: str = typer.Option("local", "--data-source", help="The records' data_source (also in file names)."),
    qa_mode: str = typer.Option("per-type", "--qa-mode", help="per-type (one call per type) or joint (one call)."),
    no_mc: bool = typer.Option(False, "--no-mc", help="Make no multiple-choice records."),
    qa_max_new_tokens: Optional[int] = typer.Option(None, "--qa-max-new-tokens", min=1, help=(
        f"Per QA call (default {SynthOptions.QA_TOKENS_PER_TYPE} per-type, {SynthOptions.QA_TOKENS_JOINT} joint).")),
    model: Optional[str] = ModelOpt, quant: Optional[str] = QuantOpt, device: Optional[str] = DeviceOpt,
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1, help=(
        f"Per description call (default {SynthOptions.DESCRIPTION_TOKENS}).")),
    temperature: Optional[float] = TemperatureOpt, top_p: Optional[float] = TopPOpt,
    pool_mode: Optional[str] = PoolOpt, compile: Optional[bool] = CompileOpt,
    executor: str = ExecutorOpt, address: Optional[str] = AddressOpt, workers: Optional[int] = WorkersOpt,
    gpus_per_worker: Optional[float] = GpusPerWorkerOpt,
    engine_factory: Optional[str] = typer.Option(None, "--engine-factory", hidden=True, help="module:function "
                                                 "making the engine from the config (tests: scripted QA)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """LLaVA-Video-178K-style data (captions, open-ended and multiple-choice QA) from videos; resumable."""
    from .synth.batch import list_videos, run_batch

    if engine_factory is None:  # the model itself will run (tests pass scripted engines)
        require_supported_transformers()
    _check_executor(executor, address, workers, gpus_per_worker)
    config = load_config(model=model, quant=quant, device=device, temperature=temperature, top_p=top_p,
                         pool_mode=pool_mode, compile=compile)
    try:
        names = tuple(t.strip() for item in types or () for t in item.split(",") if t.strip())
        options = SynthOptions.with_limits(
            description_tokens=max_new_tokens, qa_tokens=qa_max_new_tokens, temperature=config.temperature,
            top_p=config.top_p, max_frames=max_frames, qa_mode=qa_mode.replace("-", "_"), multiple_choice=not no_mc,
            data_source=data_source, **({"types": names} if names else {}))
        videos = list_videos(path, video_root)
        factory = _engine_factory(engine_factory)
    except user_errors() as err:
        fail(str(err))
    if not videos:
        fail(f"no video files under {path}")
    try:
        if executor == "ray":
            from .synth.ray_runner import run_ray

            summary = run_ray(path, out, options, config=config, engine_factory=factory, address=address,
                              workers=workers, gpus_per_worker=gpus_per_worker, video_root=video_root,
                              progress=not quiet, echo=_progress)
        else:
            summary = run_batch(path, out, options, make_engine=lambda: _make_engine(config, factory),
                                video_root=video_root, progress=not quiet)
    except user_errors() as err:
        fail(str(err))
    except KeyboardInterrupt:
        typer.echo("\n[stopped] run the same command again to resume", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    typer.echo(summary.format())
    if summary.failed:
        raise typer.Exit(EXIT_USER_ERROR)


def _engine_factory(spec: Optional[str]):
    """`module:function` -> that function (config -> engine); None -> None (the project's engine)."""
    import importlib

    if spec is None:
        return None
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"--engine-factory must be module:function, not {spec!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"--engine-factory {spec}: {err}") from None


def _make_engine(config: AppConfig, factory):
    if factory is not None:
        return factory(config)
    from .engine import Engine

    return Engine.from_config(config, progress=_progress)


dataset_app = typer.Typer(no_args_is_help=True, help="Synthetic datasets: stats, schema checks, JSON/zip export.")
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("stats")
def dataset_stats(
    folder: Path = typer.Argument(..., help="An output folder of `synth` (or a split file)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object instead of text."),
) -> None:
    """Records per split, question type and video length (0-30s, 30-60s, 1-2min, 2-3min, longer)."""
    from .dataset_report import dataset_stats as compute

    if not folder.exists():
        fail(f"{folder} does not exist")
    stats = compute(folder)
    typer.echo(json.dumps(stats.to_dict(), indent=2) if as_json else stats.format())


@dataset_app.command("check")
def dataset_check(
    folder: Path = typer.Argument(..., help="An output folder of `synth` (or a split file)."),
    max_errors: int = typer.Option(100, "--max-errors", min=1, help="Print at most this many errors."),
) -> None:
    """Validate every record against the LLaVA-Video-178K schema; exit 1 on any error."""
    from .dataset_report import check_dataset

    if not folder.exists():
        fail(f"{folder} does not exist")
    checked, errors = check_dataset(folder)
    for error in errors[:max_errors]:
        typer.echo(str(error))
    if len(errors) > max_errors:
        typer.echo(f"... and {len(errors) - max_errors} more")
    typer.echo(f"{checked} records checked, {len(errors)} errors", err=True)
    if errors:
        raise typer.Exit(EXIT_USER_ERROR)


@dataset_app.command("export")
def dataset_export(
    folder: Path = typer.Argument(..., help="An output folder of `synth`."),
    zip_path: Optional[Path] = typer.Option(None, "--zip", help="Also write a zip of the JSON arrays + manifests "
                                            "(outside the folder)."),
) -> None:
    """Write each .jsonl split as a JSON array (.json), the public dataset's format."""
    from .output_folder import export_json, export_zip

    if not folder.is_dir():
        fail(f"{folder} is not a folder")
    if zip_path is not None and zip_path.resolve().is_relative_to(folder.resolve()):
        fail(f"write the zip outside the folder it zips, not to {zip_path}")
    for path in export_json(folder):
        typer.echo(str(path))
    if zip_path is not None:
        typer.echo(str(export_zip(folder, zip_path)))


# --- benchmarks: `eval` and `eval compare` (llava_video_app/eval/) ----------------------------------

@app.command("eval")
def eval_command(
    bench: str = typer.Argument(..., help="videomme, videomme_sub, mvbench, nextqa, egoschema, longvideobench, "
                                          "mlvu; or `compare RUN_A RUN_B`."),
    runs: Optional[list[Path]] = typer.Argument(None, help="compare: the two run folders (A, then B)."),
    data: Optional[Path] = typer.Option(None, "--data", help="The benchmark's folder: its annotation files as "
                                        "distributed and its videos (layouts: docs/eval.md)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N questions."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default outputs/eval/BENCH); "
                                       "an existing one is resumed."),
    model: Optional[str] = ModelOpt, quant: Optional[str] = QuantOpt, device: Optional[str] = DeviceOpt,
    frames: Optional[float] = FramesOpt, pool_mode: Optional[str] = PoolOpt, compile: Optional[bool] = CompileOpt,
    time_instruction: Optional[bool] = typer.Option(None, "--time-instruction/--no-time-instruction", help=(
        "The model card's time line before the question (default on; off: lmms-eval llava_vid's default).")),
    max_new_tokens: Optional[float] = typer.Option(None, "--max-new-tokens", metavar="INTEGER", help=(
        "Override the benchmark's new tokens (lmms-eval's: 16, 32 for LongVideoBench, 1024 for NExT-QA).")),
    executor: str = ExecutorOpt, address: Optional[str] = AddressOpt, workers: Optional[int] = WorkersOpt,
    gpus_per_worker: Optional[float] = GpusPerWorkerOpt,
    engine_factory: Optional[str] = typer.Option(None, "--engine-factory", hidden=True),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Score the model on a video benchmark (accuracy with a 95% interval, per category), resumably;
    `eval compare RUN_A RUN_B`: the paired difference of two runs."""
    from .config import whole_number
    from .eval.benchmarks import BenchmarkError

    if bench == "compare":
        from .eval.compare import compare_runs

        if not runs or len(runs) != 2:
            fail("give two run folders: llava-video eval compare RUN_A RUN_B")
        try:
            typer.echo(compare_runs(runs[0], runs[1]))
        except (BenchmarkError, OSError, ValueError) as err:
            fail(str(err))
        return
    if runs:
        fail(f"unexpected argument {runs[0]}: llava-video eval BENCH --data DIR")
    if data is None:
        fail(f"give the benchmark's folder: llava-video eval {bench} --data DIR")
    _check_executor(executor, address, workers, gpus_per_worker)
    config = load_config(model=model, quant=quant, device=device, pool_mode=pool_mode, compile=compile,
                         frames=frames, time_instruction=time_instruction)
    try:
        from .eval.benchmarks import benchmark
        from .eval.ray_run import run_eval_ray
        from .eval.run import run_eval

        benchmark(bench)
        tokens = None if max_new_tokens is None else whole_number("max_new_tokens", max_new_tokens, 1,
                                                                  config.max_new_tokens_limit)
        factory = _engine_factory(engine_factory)
        folder = out or config.output_dir / "eval" / bench
        if executor == "ray":
            summary = run_eval_ray(bench, data, folder, config, engine_factory=factory, address=address,
                                   workers=workers, gpus_per_worker=gpus_per_worker, limit=limit,
                                   max_new_tokens=tokens, progress=not quiet, echo=_progress)
        else:
            summary = run_eval(bench, data, folder, config, make_engine=lambda: _make_engine(config, factory),
                               limit=limit, max_new_tokens=tokens, progress=not quiet)
    except user_errors() as err:
        fail(str(err))
    except KeyboardInterrupt:
        typer.echo("\n[stopped] run the same command again to resume", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    typer.echo(summary.format())
    typer.echo(f"records: {folder / 'samples.jsonl'}", err=True)


def main() -> None:
    keep_start_up_offline()  # before anything imports gradio or huggingface_hub
    app()


def app_main(argv: Sequence[str] | None = None) -> None:
    """`python app.py [flags]`: the `app` command on its own, so both take the same flags."""
    keep_start_up_offline()
    standalone = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    standalone.command(context_settings={"help_option_names": ["-h", "--help"]})(app_command)
    command = typer.main.get_command(standalone)
    command.main(args=list(sys.argv[1:] if argv is None else argv), prog_name="app.py")


if __name__ == "__main__":
    main()
