"""The GPU taken in turns (llava_video_app/gpu_queue.py): first come first served, one model call at a time,
a synthesis interleaved with answers at the grain of a call, a video read outside the line; asserted on
the order of events and on a probe that counts the calls running at once, never on times.

The same through a running app and gradio_client: tests/test_app_fair.py."""

from __future__ import annotations

import threading

from llava_video_app.config import GenerationSettings
from llava_video_app.engine import GenerationStats
from llava_video_app.gpu_queue import GpuQueue, TakingTurns
from llava_video_app.web.ask_tab import VideoChat
from llava_video_app.web.serving import ModelRunner
from llava_video_app.web.zerogpu import StopFlag


def test_tickets_take_their_turns_in_the_order_they_joined():
    line = GpuQueue()
    a, b, c = (line.join(name) for name in "abc")
    assert (a.position, b.position, c.position) == (0, 1, 2) and line.running == "a"
    assert a.wait(0) and not b.wait(0) and not c.wait(0)
    b.leave()  # gave up its place (a client that left): c moves up, a keeps the turn
    assert (a.position, b.position, c.position) == (0, None, 1)
    a.leave()
    assert c.wait(0) and line.running == "c"
    c.leave()
    c.leave()  # idempotent
    assert len(line) == 0 and line.running is None


def test_waiting_threads_run_one_at_a_time_in_the_order_they_joined():
    line, order, running, most = GpuQueue(), [], [0], [0]
    count = threading.Lock()
    tickets = [line.join(f"call {n}") for n in range(6)]  # joined in this order, then waited for in any order

    def run(ticket):
        assert ticket.wait(60)
        with count:
            running[0] += 1
            most[0] = max(most[0], running[0])
        order.append(ticket.label)
        with count:
            running[0] -= 1
        ticket.leave()

    threads = [threading.Thread(target=run, args=(t,)) for t in reversed(tickets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert order == [f"call {n}" for n in range(6)] and most[0] == 1


def test_the_waiting_visitor_is_told_what_runs_and_their_place():
    line = GpuQueue()
    line.join("a synthesis call")
    first, second = line.join("an answer"), line.join("an answer")
    assert line.waiting_line(first) == "Waiting for the GPU: a synthesis call is running (you are next)."
    assert line.waiting_line(second) == "Waiting for the GPU: a synthesis call is running (you are 2nd in line)."


class ProbeEngine:
    """An engine whose model calls count how many run at once and log their order; each call runs until
    its gate is opened (gates[n] for the n-th call)."""

    model_id, quant = "probe", "none"

    def __init__(self, calls: int):
        self.gates = [threading.Event() for _ in range(calls)]
        self.started = [threading.Event() for _ in range(calls)]
        self.log: list[str] = []
        self.running = self.most = 0
        self._count = threading.Lock()

    def load_clip(self, path, **kwargs):
        return path

    def _call(self, label):
        with self._count:
            n = sum(1 for entry in self.log if entry.startswith("synth"))
            self.running += 1
            self.most = max(self.most, self.running)
            self.log.append(f"{label} {n}")
        self.started[n].set()
        try:
            assert self.gates[n].wait(60)
            yield "x"
        finally:
            with self._count:
                self.running -= 1

    def stream(self, video, question, history=(), *, settings=None, stop=None):
        return self._call("synth")

    def stream_text(self, question, history=(), *, settings=None, stop=None):
        return self._call("synth")

    def answer_texts(self, questions, *, settings=None, stop=None):
        yield from ((i, text) for i, text in enumerate(self._call("synth")))


def test_an_answer_waits_for_one_synthesis_call_not_for_the_synthesis():
    line, engine = GpuQueue(), ProbeEngine(calls=4)
    turns = TakingTurns(engine, line)
    calls = [lambda: turns.stream("clip", "q"), lambda: turns.stream_text("q"),
             lambda: turns.answer_texts(["q", "r"]), lambda: turns.stream_text("q")]
    synthesis = threading.Thread(target=lambda: [list(call()) for call in calls])
    synthesis.start()
    assert engine.started[0].wait(60)  # the synthesis's first call holds the GPU
    answer = line.join("an answer")  # a visitor asks meanwhile
    assert not answer.wait(0) and line.waiting_line(answer).startswith("Waiting for the GPU: a synthesis call")
    engine.gates[0].set()  # the first call ends
    assert answer.wait(60)
    engine.log.append("answer")  # the answer's model call, between two of the synthesis's
    answer.leave()
    for gate in engine.gates[1:]:
        gate.set()
    synthesis.join(60)
    assert engine.log == ["synth 0", "answer", "synth 1", "synth 2", "synth 3"]
    assert engine.most == 1 and len(line) == 0


def test_a_synthesis_call_stopped_while_it_waits_never_runs_and_leaves_the_line():
    line, engine = GpuQueue(), ProbeEngine(calls=1)
    held, stop = line.join("an answer"), threading.Event()
    waiting = TakingTurns(engine, line).stream_text("q", stop=stop)
    result: list = []
    thread = threading.Thread(target=lambda: result.append(list(waiting)))
    thread.start()
    while len(line) < 2:  # until the call has joined the line
        threading.Event().wait(0.01)
    stop.set()  # its client left
    thread.join(60)
    assert result == [[]] and engine.log == [] and len(line) == 1
    held.leave()


# --- through the app's handlers (the tiny model) ------------------------------------------------------

def _answer(runner: ModelRunner, video, question: str = "What happens?"):
    return runner.answer(str(video), question, (), 8, None, None, GenerationSettings(max_new_tokens=3),
                         StopFlag(), "visitor")


def test_a_read_that_stalls_holds_only_its_own_request(tiny_engine, sample_video, tmp_path, monkeypatch):
    """A video whose read blocks (until released here) is read outside the GPU's line: another request
    is answered while it is still blocked."""
    runner, release, stalled_read = ModelRunner(tiny_engine), threading.Event(), threading.Event()
    stalling = tmp_path / "stall.mp4"
    stalling.write_bytes(sample_video.read_bytes())
    real = tiny_engine._load_clip

    def load(path, **kwargs):
        if "stall" in str(path):
            stalled_read.set()
            assert release.wait(120)
        return real(path, **kwargs)

    monkeypatch.setattr(tiny_engine, "_load_clip", load)
    first: list = []
    held = threading.Thread(target=lambda: first.append(list(_answer(runner, stalling))))
    held.start()
    assert stalled_read.wait(120)
    served = [item for item in _answer(runner, sample_video) if isinstance(item, str)]
    assert "".join(served), "the other request is answered"
    assert held.is_alive() and not first, "... while the stalled one still waits for its read"
    release.set()
    held.join(120)
    assert any(isinstance(item, str) and item for item in first[0]), "the stalled one is answered once it reads"


def test_an_answer_waiting_for_a_synthesis_call_tells_the_visitor_and_runs_after_it(tiny_engine, sample_video):
    chat = VideoChat(tiny_engine)
    synthesis_call = chat.model.gpu_queue.join("a synthesis call")  # holds the GPU
    asking = chat.ask(str(sample_video), "What happens?", 0, None, 8, 3, 0.0, 1.0, None)
    first = next(asking)
    assert first[3] == "Answering…" and [m["role"] for m in first[0]] == ["user"]
    waiting = next(asking)  # the video is read; the answer waits for its turn
    assert waiting[3] == "Waiting for the GPU: a synthesis call is running (you are next)."
    statuses = []
    for _ in range(2):  # it keeps waiting (and saying so) while the call runs
        statuses.append(next(asking)[3])
    assert statuses == [waiting[3]] * 2
    synthesis_call.leave()
    rest = list(asking)
    assert rest[-1][0][-1]["role"] == "assistant" and rest[-1][0][-1]["content"], "answered once the call ended"
    assert rest[0][3] == "Answering…", "the status says it runs again"
    assert "tok/s" in rest[-1][3]


def test_a_synthesis_waiting_for_an_answer_says_so_and_goes_on_after_it(scripted_engine, sample_video, tmp_path):
    from llava_video_app.web.synth_tab import SynthPanel

    from llava_video_app.config import AppConfig

    engine = scripted_engine()
    engine.config = AppConfig()
    panel = SynthPanel(ModelRunner(engine), out_dir=tmp_path / "out")
    answer = panel.model.gpu_queue.join("an answer")  # an Ask holds the GPU
    running = panel.generate(str(sample_video), None, 16, 16)
    for _, outputs in zip(range(100), running):  # a heartbeat each half second while it waits
        if "waiting for the GPU" in outputs[0]:
            break
    assert outputs[0].startswith("step 1/") and outputs[0].endswith(" (waiting for the GPU: an answer is running)")
    assert engine.calls == {}, "no model call ran while the answer had the GPU"
    answer.leave()
    progress = [outputs[0] for outputs in running]
    assert progress[-1].startswith("Done: ") and "waiting" not in progress[-1]


def test_an_answer_cut_short_keeps_its_own_stats_taken_in_its_turn(tiny_engine, sample_video):
    """The engine's last stats are whoever's call ran last: an answer closed early (a cancelled event) takes
    its own within its turn, so the status line never shows another visitor's (cache hits, reused tokens)."""
    chat = VideoChat(tiny_engine)
    asking = chat.ask(str(sample_video), "What happens?", 0, None, 8, 12, 0.0, 1.0, None)
    for outputs in asking:
        if outputs[0][-1]["role"] == "assistant" and outputs[0][-1]["content"]:
            break  # the answer is running
    asking.close()  # the event is cancelled
    runner = ModelRunner(tiny_engine)
    other = list(runner.answer(str(sample_video), "Who else?", (), 8, None, None, GenerationSettings(max_new_tokens=2),
                               StopFlag(), "another visitor"))
    stats = chat.sessions.get(None).stats
    # This answer's own stats (cut short, or finished before the close reached it: the tiny model is fast), never
    # the other visitor's, which are the engine's last now.
    others = next(item for item in other if isinstance(item, GenerationStats))
    assert stats is not None and stats is not tiny_engine.last_stats and others is tiny_engine.last_stats
    assert 1 <= stats.new_tokens <= 12 and others.new_tokens == 2
