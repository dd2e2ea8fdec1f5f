"""The GPU taken in turns: one model call at a time, first come first served, at the grain of a model call.

Why: on a shared app every answer and every call of a synthesis need the one engine, which runs one call
at a time. Holding it for a whole request would make an Ask wait for a whole synthesis (tens of calls),
and a request that stalls reading its video would hold everyone. So a request reads and decodes its
video first, outside the line, then joins the line for the model call alone; a synthesis joins it
anew for each of its calls, so an Ask that arrives meanwhile waits at most for the call that runs.

`GpuQueue.join(label)` gives a `Ticket`; `ticket.wait(timeout)` is True once it is the ticket's turn
(its position 0); `ticket.leave()` ends the turn or leaves the line (a client that went away).
`TakingTurns` is an engine, as the synthesis recipe uses it, whose every model call takes a turn.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Callable, ContextManager, Iterator, Optional, Sequence

from .prompts import Turn

# How often a model call that waits for its turn checks its Stop (a synthesis whose client left).
STOP_POLL_S = 0.2


# A turn on the GPU for one model call, as the work that may share the GPU takes it (compare, batch_ask): a
# context manager giving True once the call may run, False when its stop was set while it waited.
GpuTurn = Callable[[Optional[threading.Event]], ContextManager[bool]]


@contextmanager
def gpu_is_ours(stop: threading.Event | None = None) -> Iterator[bool]:
    """The GpuTurn of a process that has the GPU to itself (the CLI, a Ray worker): always at once."""
    yield True


class Ticket:
    """A place in the GPU's line; a context manager that leaves the line on exit."""

    def __init__(self, line: "GpuQueue", label: str):
        self._line = line
        self.label = label  # what the holder runs, for those who wait: "a synthesis call", "an answer"

    @property
    def position(self) -> int | None:
        """0: its turn (the GPU is its); n: n calls before it; None: it has left the line."""
        return self._line._position(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Until it is this ticket's turn (True) or `timeout` s have passed (False)."""
        return self._line._wait(self, timeout)

    def leave(self) -> None:
        """The turn is over, or the place is given up; the next in line goes on. Idempotent."""
        self._line._leave(self)

    def __enter__(self) -> "Ticket":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.leave()


class GpuQueue:
    """A first-come-first-served lock on the GPU: tickets in the order they joined, the first one's turn."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._line: list[Ticket] = []

    def join(self, label: str) -> Ticket:
        ticket = Ticket(self, label)
        with self._changed:
            self._line.append(ticket)
        return ticket

    @property
    def running(self) -> str | None:
        """The label of the call whose turn it is (None: the GPU is free)."""
        with self._changed:
            return self._line[0].label if self._line else None

    def __len__(self) -> int:
        with self._changed:
            return len(self._line)

    def _position(self, ticket: Ticket) -> int | None:
        with self._changed:
            return self._line.index(ticket) if ticket in self._line else None

    def _wait(self, ticket: Ticket, timeout: float | None) -> bool:
        with self._changed:
            if ticket not in self._line:
                raise RuntimeError("this ticket has left the GPU's line")
            return self._changed.wait_for(lambda: self._line[0] is ticket, timeout)

    def _leave(self, ticket: Ticket) -> None:
        with self._changed:
            if ticket in self._line:
                self._line.remove(ticket)
                self._changed.notify_all()

    @contextmanager
    def turn(self, label: str, stop: threading.Event | None = None) -> Iterator[bool]:
        """A turn on the GPU for one model call: True once it is this call's; False when `stop` was set while it
        waited (nothing may run then). The line moves on when the block ends."""
        with self.join(label) as ticket:
            while not ticket.wait(STOP_POLL_S):
                if stop is not None and stop.is_set():
                    yield False
                    return
            yield True

    def waiting_line(self, ticket: Ticket) -> str:
        """What a visitor whose ticket waits is told: what runs, and their place in the line."""
        position, running = ticket.position, self.running
        if not position or running is None:
            return "Starting on the GPU…"
        place = "next" if position == 1 else f"{_ordinal(position)} in line"
        return f"Waiting for the GPU: {running} is running (you are {place})."


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class TakingTurns:
    """An engine as the synthesis recipe uses it (synth.recipe.EngineLike), each of whose model calls
    (stream, stream_text, answer_texts when the engine has it) waits for a turn in `line` and holds it
    for that call only; video decoding (load_clip) takes no turn. A call whose `stop` is set while it
    waits ends without running (the recipe sees its Stop and ends)."""

    def __init__(self, engine: Any, line: GpuQueue, label: str = "a synthesis call"):
        self._engine, self._line, self._label = engine, line, label
        self.model_id, self.quant = engine.model_id, engine.quant
        self.load_clip = engine.load_clip
        if hasattr(engine, "answer_texts"):  # the recipe batches its QA calls when the engine can
            self.answer_texts = self._answer_texts

    def stream(self, video: Any, question: str, history: Sequence[Turn] = (), *, settings: Any = None,
               stop: threading.Event | None = None) -> Iterator[str]:
        return self._in_turn(lambda: self._engine.stream(video, question, history, settings=settings, stop=stop), stop)

    def stream_text(self, question: str, history: Sequence[Turn] = (), *, settings: Any = None,
                    stop: threading.Event | None = None) -> Iterator[str]:
        return self._in_turn(lambda: self._engine.stream_text(question, history, settings=settings, stop=stop), stop)

    def _answer_texts(self, questions: Sequence[str], *, settings: Any = None,
                      stop: threading.Event | None = None) -> Iterator[tuple[int, str]]:
        return self._in_turn(lambda: self._engine.answer_texts(questions, settings=settings, stop=stop), stop)

    def _in_turn(self, call: Callable[[], Iterator[Any]], stop: threading.Event | None) -> Iterator[Any]:
        with self._line.turn(self._label, stop) as ours:
            if ours:
                yield from call()  # closed before the turn ends: the call is over when the next one starts
