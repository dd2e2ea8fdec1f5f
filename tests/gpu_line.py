"""Test helper for work that takes turns in the GPU's line (gpu_queue.GpuQueue): start it in a thread and
return once it waits in the line behind the call that holds the GPU."""

import threading
import time
from typing import Callable

from llava_video_app.gpu_queue import GpuQueue


def start_waiting(line: GpuQueue, work: Callable[[], None]) -> threading.Thread:
    """`work` in a thread, returned once it has joined `line` behind one other ticket (or has ended)."""
    worker = threading.Thread(target=work)
    worker.start()
    while worker.is_alive() and len(line) < 2:
        time.sleep(0.05)  # polling a count, not measuring time
    return worker
