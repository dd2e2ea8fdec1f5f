"""The Ask tab's "Ask again with…" panel and the /compare endpoint: the conversation's last question
asked again (on its own) under the current settings and 1-3 variants of them, the answers side by side
with the differing settings marked, what each reused from the caches, and the answers kept in the
tab's history (each a one-turn conversation marked with its variant, so the exports carry them).

The work is compare.py's (the CLI's too); this module is the page and the API over it (`Comparer`).
"""

from __future__ import annotations

import dataclasses
import html
import json
from typing import Any, ContextManager, Iterator, Sequence

import gradio as gr

from .. import compare as comparing
from ..engine import visiting
from ..prompts import Turn
from ..provenance import summary_of
from ..request import RequestSettings, check_question, check_request
from ..second_model import SecondModel
from .conversation import ChatState
from .player import html_with_seek_links
from .serving import MODEL_EVENT_WORKERS, MODEL_EVENTS, Sessions, refuse, stream_in_thread, user_errors
from .zerogpu import StopFlag

SCHEMA = "llava-video/comparison/1"
PICKED_MAX = comparing.MAX_VARIANTS - 1  # the page adds the settings as they are ("as asked") first


def presets(frames: int, max_frames: int) -> list[str]:
    """Variants offered in the picker (any other can be typed)."""
    fewer, more = max(1, frames // 4), min(max_frames, frames * 2)
    return [f"frames={fewer}", *([f"frames={more}"] if more != frames else []), "route=exact", "pool=average",
            "pool=max", "temperature=0.7", "temperature=0.7, seed=1", "quant=bf16"]


def split_variants(text: str | Sequence[str] | None) -> list[str]:
    """Variants as the API takes them: a list, or one string with one variant per line or between "|"."""
    if text is None:
        return []
    if isinstance(text, str):
        return [part.strip() for line in text.splitlines() for part in line.split("|") if part.strip()]
    return [str(t).strip() for t in text if str(t).strip()]


class Comparer:
    """Runs comparisons for the page and the API over the Ask tab's VideoChat (its engine holder,
    sessions for Stop, and status line). The second quantisation is loaded once, when first asked for."""

    def __init__(self, chat: Any, second_model: SecondModel | None = None):
        self.chat = chat
        self.config = chat.config
        self._second = second_model
        # Wrapped once, as ModelRunner's calls are (spaces.GPU keeps a forked worker per wrapped function).
        gpu = getattr(chat.model, "gpu", None)
        self._compare_on_gpu = gpu(self._compare, compare_duration) if gpu is not None else self._compare

    def second_model(self) -> SecondModel:
        engine = self.chat.holder.get()
        if self._second is None or self._second.engine is not engine:
            self._second = SecondModel(engine)
        return self._second

    def stream(self, video: str | None, question: str, variant_texts: Sequence[str], *, frames: Any = None,
               start: Any = None, end: Any = None, max_new_tokens: Any = None, temperature: Any = None,
               top_p: Any = None, seed: Any = None, request: gr.Request | None = None,
               stop: Any = None) -> Iterator[comparing.Progress | comparing.Comparison]:
        """compare.compare for a visitor: checks with the API's words (gr.Error), then the answers as
        they grow and the Comparison, produced in a thread of its own (Stop reaches it through `stop`)."""
        if not video:
            raise refuse("Upload a video first (or click an example).")
        with user_errors(video):
            question = check_question(question, self.config.max_question_chars)
            base = check_request(self.config, frames=frames, start=start, end=end, max_new_tokens=max_new_tokens,
                                 temperature=temperature, top_p=top_p, seed=seed)
            variants = comparing.parse_variants(variant_texts)
        self.chat.holder.get()  # loaded, or a message that says why not
        visitor = Sessions.key(request)
        stop = stop if stop is not None else self.chat.sessions.get(request).stop
        with user_errors(video):
            for item in stream_in_thread(lambda: self._compare_on_gpu(video, question, tuple(variants), base, stop,
                                                                      visitor), stop):
                if isinstance(item, comparing.Comparison):
                    for answer in item.answers:  # an upload's server path, shortened as user_errors does
                        if answer.error:
                            answer.error = answer.error.replace(str(video), video.rsplit("/", 1)[-1])
                yield item

    def _compare(self, video: str, question: str, variants: Sequence[comparing.Variant],
                 base: RequestSettings, stop: StopFlag, visitor: str) -> Iterator[Any]:
        """compare.compare in the `visitor`'s caches (runs on the GPU: in a ZeroGPU slot there)."""
        engine = self.chat.holder.get()
        with visiting(visitor):
            yield from comparing.compare(engine, video, question, variants, base, models=self.second_model(),
                                         stop=stop, turn=self._turn)

    def _turn(self, stop: StopFlag | None) -> ContextManager[bool]:
        """A variant's model call takes its turn in the GPU's line, as answers and synthesis calls do."""
        return self.chat.model.gpu_queue.turn("a comparison", stop)

    # --- the page ---------------------------------------------------------------------------------
    def run_in_page(self, video: str | None, question_box: str, picked: Sequence[str] | None, start: float | None,
                    end: float | None, frames: float, max_new_tokens: float, temperature: float, top_p: float,
                    state: ChatState | None, seed: float | None = None,
                    request: gr.Request | None = None) -> Iterator[tuple]:
        """The panel's Compare button: the conversation's last question (or the question box's, before
        any) under the settings as they are and each picked variant. Yields (table, state, status,
        Stop button); a refusal is one warning toast and the page keeps what it shows."""
        state = state or ChatState()
        question = state.turns[-1].question if state.turns else (question_box or "").strip()
        picked = [p for p in (picked or []) if str(p).strip()]
        session = self.chat.sessions.get(request)
        try:
            if not question:
                raise refuse("Ask a question first (or type one): Compare asks it again.")
            if not picked:
                raise refuse("Pick at least one variant to compare with (e.g. frames=16).")
            if len(picked) > PICKED_MAX:
                raise refuse(f"Pick at most {PICKED_MAX} variants.")
            start, end = state.trim(start, end)
            texts = [comparing.AS_ASKED, *picked]
            labels = [comparing.parse_variant(t).label() if _parses(t) else t for t in texts]
            session.stop.clear()
            session.idle.clear()
            answers = [comparing.VariantAnswer(label) for label in labels]
            yield (comparison_html(question, answers, {}, state.duration), gr.skip(), "Comparing…",
                   gr.update(interactive=True))
            result = None
            for item in self.stream(video, question, texts, frames=frames, start=start, end=end,
                                    max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
                                    request=request, stop=session.stop):
                if isinstance(item, comparing.Comparison):
                    result = item
                else:
                    answers[item.index].answer = item.text
                    yield comparison_html(question, answers, {}, state.duration), gr.skip(), gr.skip(), gr.skip()
        except gr.Error as err:
            gr.Warning(str(err.message))
            yield gr.skip(), gr.skip(), self.chat.status(), gr.update(interactive=False)
            return
        finally:
            session.idle.set()
        kept = with_comparison(state, result, video)
        yield (comparison_html(question, result.answers, result.differences, state.duration), kept,
               self.chat.status(self.chat.holder.engine.last_stats if self.chat.holder.ready else None),
               gr.update(interactive=False))

    # --- the API ----------------------------------------------------------------------------------
    def api_compare(self, video: str, question: str, variants: str, frames: float | None = None,
                    start: float | None = None, end: float | None = None, max_new_tokens: float | None = None,
                    temperature: float | None = None, top_p: float | None = None, seed: float | None = None,
                    request: gr.Request | None = None) -> str:
        """Ask one question about a video under 1-4 variants of the settings; returns JSON: each
        variant's answer, provenance, what it reused from the caches (or its error), and the
        settings in which the answers differ (schema "llava-video/comparison/1").

        Args:
            video: the video file (mp4, webm, mov, ...).
            question: the question about the video.
            variants: one variant per line (or between "|"), e.g. "as asked | frames=16 | pool=max, route=exact";
                settings: frames, trim=START-END, pool, temperature, top_p, seed, route=fast|exact, quant.
            frames: the request's frames, which variants change (default: the app's, 64).
            start: start of the part of the video to use, in seconds (default: the beginning).
            end: end of the part of the video to use, in seconds (default: the end).
            max_new_tokens: longest answer, in tokens.
            temperature: 0 = greedy (default).
            top_p: nucleus sampling threshold.
            seed: the sampler's seed (default: one drawn for the whole comparison).
        """
        result = None
        for item in self.stream(video, question, split_variants(variants), frames=frames, start=start, end=end,
                                max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
                                request=request, stop=_fresh_stop()):
            if isinstance(item, comparing.Comparison):
                result = item
        return json.dumps({"schema": SCHEMA, **result.to_dict()}, ensure_ascii=False)


def comparer_of(chat: Any) -> Comparer:
    """The one Comparer of a VideoChat (the page and /compare share its second model)."""
    comparer = getattr(chat, "_comparer", None)
    if comparer is None:
        comparer = chat._comparer = Comparer(chat)
    return comparer


def _fresh_stop() -> StopFlag:
    return StopFlag()


def compare_duration(video: str, question: str, variants: Sequence[comparing.Variant], base: RequestSettings,
                     stop: Any, visitor: str = "") -> int:
    """Seconds of ZeroGPU time to ask for a comparison, on gpu_duration's terms per variant (frames at
    0.25 s, new tokens at 20/s), plus a minute to load a second quantisation."""
    seconds = 30 + sum(0.25 * (v.frames or base.frames) + base.generation.max_new_tokens / 20 for v in variants)
    return int(min(300, seconds + (60 if any(v.quant for v in variants) else 0)))


def _parses(text: str) -> bool:
    try:
        comparing.parse_variant(text)
    except ValueError:
        return False
    return True


def with_comparison(state: ChatState, result: comparing.Comparison, video: str) -> ChatState:
    """`state` with the comparison's answers added to the tab's history (before the conversation on
    screen, which stays as it is): one single-turn conversation per answered variant."""
    added = []
    for conversation in comparing.as_conversations(result, video):
        record = conversation["turns"][0]["provenance"]
        settings = record.get("settings") or {}
        trim = record.get("trim") or {}
        added.append(ChatState(video, state.duration, settings.get("frames") or 0, trim.get("start"), trim.get("end"),
                               [Turn(result.question, conversation["turns"][0]["answer"])],
                               (settings.get("temperature"), settings.get("top_p"), record.get("seed")),
                               [record], compare=conversation["compare"]))
    return dataclasses.replace(state, past=[*state.past, *added])


def comparison_html(question: str, answers: Sequence[comparing.VariantAnswer],
                    differences: dict[str, list[Any]], duration: float | None = None) -> str:
    """The answers side by side: per column the variant, the settings in which it differs from the
    others (marked), the answer (its times seek the player, up to the video's `duration`), what it
    reused, and its provenance line."""
    cells = []
    for n, answer in enumerate(answers):
        differs = "".join(f"<li><mark>{html.escape(name)}: {html.escape(comparing.shown_value(values[n]))}</mark></li>"
                          for name, values in differences.items() if name not in ("frame times (s)", "prompt"))
        body = (f"<p class='compare-error'>{html.escape(answer.error)}</p>" if answer.error else
                f"<div class='compare-answer'>{html_with_seek_links(answer.answer, duration) or '…'}</div>")
        foot = ""
        if answer.provenance:
            foot = (f"<p class='compare-reused'>{html.escape(answer.reused_text())}</p>"
                    f"<p class='compare-provenance'><small>{html.escape(summary_of(answer.provenance))}</small></p>")
        cells.append(f"<td class='compare-column' data-variant='{html.escape(answer.variant, quote=True)}'>"
                     f"<h4>{html.escape(answer.variant)}</h4>{f'<ul>{differs}</ul>' if differs else ''}"
                     f"{body}{foot}</td>")
    same = "" if differences or not any(a.provenance for a in answers) else \
        "<p class='compare-same'>No setting or input differs.</p>"
    return (f"<div id='compare-result'><p><b>Question:</b> {html.escape(question)}</p>{same}"
            f"<table class='compare-table'><tr>{''.join(cells)}</tr></table></div>")


COMPARE_CSS = """
#compare-result .compare-table { width: 100%; table-layout: fixed; border-collapse: collapse; }
#compare-result .compare-column { vertical-align: top; padding: 6px; border: 1px solid var(--border-color-primary); }
#compare-result .compare-answer { white-space: pre-wrap; }
#compare-result mark { background: #fde68a; color: #111; }
"""


def compare_panel(config: Any) -> dict[str, Any]:
    """The panel's components (inside the Ask tab's right column, under the conversation)."""
    with gr.Accordion("Ask again with…", open=False, elem_id="compare-panel"):
        picker = gr.Dropdown(presets(config.frames, config.max_frames), value=[], multiselect=True,
                             allow_custom_value=True, max_choices=PICKED_MAX, label="Variants (1-3)",
                             elem_id="compare-variants",
                             info="next to the current settings; type your own: " + comparing.VARIANT_HELP)
        button = gr.Button("Compare", elem_id="compare", size="sm")
        table = gr.HTML(elem_id="compare-output")
    return {"picker": picker, "button": button, "table": table}


def wire_compare(comparer: Comparer, panel: dict[str, Any], *, video: Any, question: Any, start: Any, end: Any,
                 frames: Any, max_new_tokens: Any, temperature: Any, top_p: Any, seed: Any, state: Any,
                 status: Any, ask_btn: Any, stop_btn: Any) -> Any:
    """The panel's Compare event (one model event at a time, like Ask); returns it, for Stop to cancel."""
    private = dict(api_visibility="private")
    return panel["button"].click(comparer.chat.running_buttons, None, [ask_btn, stop_btn], queue=False,
                                 **private).then(
        comparer.run_in_page, [video, question, panel["picker"], start, end, frames, max_new_tokens, temperature,
                               top_p, state, seed], [panel["table"], state, status, stop_btn],
        show_progress="minimal", concurrency_limit=MODEL_EVENT_WORKERS, concurrency_id=MODEL_EVENTS, **private)


def compare_api(comparer: Comparer) -> None:
    """/compare (gradio_client / MCP): hidden inputs, the comparison as JSON."""
    config = comparer.config
    with gr.Column(visible=False):
        inputs = [gr.File(label="video", type="filepath"), gr.Textbox(label="question"),
                  gr.Textbox(label="variants"), gr.Number(config.frames, label="frames"),
                  gr.Number(None, label="start"), gr.Number(None, label="end"),
                  gr.Number(config.max_new_tokens, label="max_new_tokens"),
                  gr.Number(config.temperature, label="temperature"), gr.Number(config.top_p, label="top_p"),
                  gr.Number(config.seed, label="seed")]
        output = gr.Textbox(label="comparison")
        trigger = gr.Button()
    trigger.click(comparer.api_compare, inputs, output, api_name="compare",
                  concurrency_limit=MODEL_EVENT_WORKERS, concurrency_id=MODEL_EVENTS)
