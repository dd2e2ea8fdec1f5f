"""The local Ray that the Ray executors' tests share (test_synth_ray.py, test_eval_ray.py,
test_batch_ask.py): `ray` (the module, or the test module skipped without the extra) and the
`ray_cluster` fixture, one local Ray with 2 CPUs per test module that imports it.

Its workers import this worktree's package and the tests' scripted engines (PYTHONPATH, inherited
from this process) and know the pause folder of scripted_engines (a worker killed mid-video)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

if os.environ.get("LLAVA_VIDEO_REQUIRE_RAY") == "1":  # CI (.ci/run) installs the extra: never skip there
    import ray
    import ray.data  # noqa: F401
else:
    ray = pytest.importorskip("ray", reason="the Ray executor needs ray[data]: pip install -e '.[ray]'")
    pytest.importorskip("ray.data", reason="the Ray executor needs ray[data]: pip install -e '.[ray]'")

from scripted_engines import PAUSE_DIR_ENV  # noqa: E402

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


@dataclass(frozen=True)
class LocalRay:
    address: str  # for `--address` (a driver joining the running cluster)
    pause_dir: Path  # scripted_engines' pause files (PAUSE_DIR_ENV)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory) -> LocalRay:
    """One local Ray (2 CPUs) for the test module, shut down after it."""
    pause_dir = tmp_path_factory.mktemp("ray-pause")
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", PAUSE_DIR_ENV)}
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), str(REPO), saved["PYTHONPATH"]) if p)
    os.environ[PAUSE_DIR_ENV] = str(pause_dir)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield LocalRay(ray.get_runtime_context().gcs_address, pause_dir)
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
