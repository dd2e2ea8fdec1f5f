"""One video into an output folder, the step every runner repeats (batch.py in this process,
ray_runner.py in Ray actors), so that they write exactly the same folder: `process_video`.

It skips a video whose manifest says "done" or whose lock another process holds; under the lock it
marks the video "running" (counting attempts), fetches it if remote, runs the recipe with the given
engine, saves its records and its "done" manifest (saving.py), or logs its failure (errors.log and a
"failed" manifest). A worker that dies mid-video (out of memory, killed) leaves the "running" mark
behind; the retry counts it, and after MAX_ATTEMPTS deaths the video is logged as failed instead of
taking the worker down again (a re-run tries it afresh).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .. import output_folder as folder
from .events import CallStarted, DescriptionWritten, Done, Planned, QAParsed, Stopped
from .plan import SynthOptions
from .recipe import EngineLike, synthesize
from .sources import VideoSource, local_copy

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # deaths of a worker on one video before it is logged as failed

STATUSES = ("done", "skipped", "failed", "stopped")


@dataclass
class VideoOutcome:
    """What became of one video: its status and what it added to the folder (plain data, so that a
    Ray actor can return it as a row)."""

    video: str  # the source's location
    video_id: str
    status: str  # one of STATUSES
    error: str | None = None
    written: dict[str, int] = field(default_factory=dict)  # new records per split file
    rejects: dict[str, int] = field(default_factory=dict)
    mc_skipped: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    duration: float = 0.0  # seconds of video (done only)

    def to_row(self) -> dict[str, Any]:
        return {"outcome": json.dumps(asdict(self))}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "VideoOutcome":
        return cls(**json.loads(row["outcome"]))


class EngineUnavailable(Exception):
    """The engine could not be made: not the video's fault, so the run stops (`error` says why)."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


class VideoStopped(Exception):
    """The stop event was set during the video; nothing of it was saved."""


def process_video(source: VideoSource, out_dir: str | os.PathLike, options: SynthOptions,
                  engine_for: Callable[[], EngineLike], *, stop: threading.Event | None = None,
                  progress: bool = False, fsync: bool = True, run_id: str | None = None) -> VideoOutcome:
    """Synthesize one video into `out_dir` (see the module's docstring). `engine_for()` is called only
    when the video is to be run (so a resumed run loads no model for finished videos); its failure
    raises EngineUnavailable. Raises VideoStopped when `stop` ends the run mid-video. `run_id` names
    the run (new_run_id(), the same for all of a run's workers): deaths are counted within one run
    only, so a video killed mid-run is tried afresh by the next run (default: this process's run).
    A disk that refuses a write (full, read-only) raises FolderNotWritable: the run stops there."""
    out_dir = Path(out_dir)
    if folder.is_done(out_dir, source.video_id):
        return VideoOutcome(source.location, source.video_id, "skipped")
    with folder.writing_to(out_dir):  # a full or read-only disk stops the run: not this video's fault
        return _process_locked(source, out_dir, options, engine_for, stop, progress, fsync, run_id)


def _process_locked(source: VideoSource, out_dir: Path, options: SynthOptions, engine_for: Callable[[], EngineLike],
                    stop: threading.Event | None, progress: bool, fsync: bool, run_id: str | None) -> VideoOutcome:
    from filelock import Timeout

    vid = source.video_id
    skipped = VideoOutcome(source.location, vid, "skipped")
    lock = folder.video_lock(out_dir, vid)
    try:
        lock.acquire()
    except Timeout:  # another process is on it
        return skipped
    try:
        if folder.is_done(out_dir, vid):  # finished by another process meanwhile
            return skipped
        try:
            engine = engine_for()
        except Exception as err:
            raise EngineUnavailable(err) from err
        attempts = _mark_running(out_dir, source, run_id or PROCESS_RUN_ID)
        try:
            if attempts > MAX_ATTEMPTS:
                raise RuntimeError(f"a worker died during this video {attempts - 1} times in this run (out of "
                                   "memory? a crash in a decoder?); a new run tries it again")
            return _run(source, out_dir, options, engine, stop, progress, fsync)
        except VideoStopped:
            _clear_running(out_dir, vid)
            raise
        except OSError as err:
            if folder.disk_refused(err):
                _clear_running_quietly(out_dir, vid)
                raise  # writing_to names the folder and stops the run
            error = one_line(err)
            folder.log_failure(out_dir, source.location, error, vid, source.relative)
            return VideoOutcome(source.location, vid, "failed", error)
        except Exception as err:  # one bad video must not stop the run
            error = one_line(err)
            folder.log_failure(out_dir, source.location, error, vid, source.relative)
            log.debug("synth failed on %s", source.location, exc_info=True)
            return VideoOutcome(source.location, vid, "failed", error)
        except BaseException:  # Ctrl-C: not a crash of the video, so no attempt is counted
            _clear_running(out_dir, vid)
            raise
    finally:
        lock.release()


def _run(source: VideoSource, out_dir: Path, options: SynthOptions, engine: EngineLike,
         stop: threading.Event | None, progress: bool, fsync: bool) -> VideoOutcome:
    from tqdm import tqdm

    from .saving import save_result

    result = None
    with local_copy(source) as (path, root):
        bar = tqdm(total=1, desc=source.relative[-40:], unit="call", leave=False, disable=not progress, position=1)
        try:
            for event in synthesize(engine, path, options, video_root=root, stop=stop):
                if isinstance(event, Planned):
                    bar.reset(total=event.total_steps)
                elif isinstance(event, CallStarted):
                    bar.set_postfix_str(event.stage, refresh=False)
                elif isinstance(event, (DescriptionWritten, QAParsed)):
                    bar.update(1)
                elif isinstance(event, Stopped):
                    raise VideoStopped(source.location)
                elif isinstance(event, Done):
                    result = event.result
        finally:
            bar.close()
    if result is None:
        raise RuntimeError("the recipe ended without a result")
    if source.is_remote:
        result.video_path = source.location  # not the temporary copy
    written = save_result(out_dir, result, fsync=fsync)
    return VideoOutcome(source.location, source.video_id, "done", written={k: len(v) for k, v in written.items()},
                        rejects=dict(result.rejects), mc_skipped=result.mc_skipped, calls=dict(result.calls),
                        duration=float(result.duration))


def new_run_id() -> str:
    """A run's name in the manifests: a death left by another run is not this run's attempt."""
    return uuid.uuid4().hex[:12]


PROCESS_RUN_ID = new_run_id()


def _mark_running(out_dir: Path, source: VideoSource, run_id: str) -> int:
    """Write the "running" manifest (lock held); returns this run's attempt number (1 for a fresh start,
    or when the "running" mark left behind is an earlier run's)."""
    try:
        previous = folder.read_manifest(out_dir, source.video_id)
    except (FileNotFoundError, ValueError):
        previous = {}
    same_run = previous.get("status") == "running" and previous.get("run") == run_id
    attempts = int(previous.get("attempts", 0)) + 1 if same_run else 1
    folder.write_manifest(out_dir, source.video_id, {
        "status": "running", "video": source.relative, "video_path": source.location, "attempts": attempts,
        "run": run_id, "time": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return attempts


def _clear_running_quietly(out_dir: Path, video_id: str) -> None:
    """Drop the "running" mark if the disk lets us (a refused write is not a death of the worker)."""
    try:
        _clear_running(out_dir, video_id)
    except OSError:
        pass  # the mark stays: the next run counts it as its predecessor's, not its own (see _mark_running)


def _clear_running(out_dir: Path, video_id: str) -> None:
    try:
        if folder.read_manifest(out_dir, video_id).get("status") == "running":
            folder.manifest_path(out_dir, video_id).unlink()
    except (FileNotFoundError, ValueError):
        pass  # nothing to clear


def one_line(err: BaseException) -> str:
    """`Type: first line of the message`, for errors.log and the summary."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")
