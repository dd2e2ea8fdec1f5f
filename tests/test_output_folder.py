"""The output folder (output_folder.py): split file names, records routed to their split, export to
JSON arrays and a zip, manifests and the error log."""

from __future__ import annotations

import json

from llava_video_app import output_folder as folder
from llava_video_app.dataset_report import check_dataset


def test_split_file_names_follow_llava_video_178k():
    assert folder.split_filename("cap", "0_30_s", "My Videos") == "0_30_s_my_videos_cap_processed.jsonl"
    assert folder.split_filename("oe", "1_2_m", "yt", ".json") == "1_2_m_yt_oe_qa_processed.json"
    assert folder.split_filename("mc", "2_3_m", "yt") == "2_3_m_yt_mc_qa_processed.jsonl"
    # ours and the public dataset's own names are both recognised
    for name, task in [("0_30_s_yt_cap_processed.jsonl", "cap"), ("0_30_s_academic_oe_v0_1_qa_processed.json", "oe"),
                       ("2_3_m_academic_mc_v0_1_qa_processed.json", "mc"), ("0_30_s_academic_v0_1_cap_processed.json",
                                                                            "cap"), ("notes.json", None)]:
        assert folder.task_of_filename(name) == task


def test_append_records_routes_to_split_files(dataset_folder):
    assert sorted(p.name for p in folder.split_files(dataset_folder)) == [
        "0_30_s_test_cap_processed.jsonl", "0_30_s_test_oe_qa_processed.jsonl", "1_2_m_test_mc_qa_processed.jsonl",
        "30_60_s_test_oe_qa_processed.jsonl", "over_3_m_other_oe_qa_processed.jsonl"]


def test_export_json_arrays_and_zip(dataset_folder, tmp_path):
    import zipfile

    paths = folder.export_json(dataset_folder)
    assert len(paths) == 5
    for p in paths:
        assert isinstance(json.loads(p.read_text()), list)
    assert check_dataset(dataset_folder) == (5, [])  # an export next to its .jsonl is not counted twice
    z = folder.export_zip(dataset_folder, tmp_path / "run.zip")
    assert sorted(zipfile.ZipFile(z).namelist()) == sorted(p.name for p in paths)


def test_manifests_mark_done_and_failures_are_logged(tmp_path):
    assert not folder.is_done(tmp_path, "clip-1")
    folder.log_failure(tmp_path, tmp_path / "clip.mp4", "ValueError: broken", "clip-1", "clip.mp4")
    assert folder.read_manifest(tmp_path, "clip-1")["status"] == "failed" and not folder.is_done(tmp_path, "clip-1")
    assert (tmp_path / "errors.log").read_text().rstrip().endswith(f"{tmp_path / 'clip.mp4'}\tValueError: broken")
    folder.write_manifest(tmp_path, "clip-1", {"status": "done"})
    assert folder.is_done(tmp_path, "clip-1") and folder.manifest_path(tmp_path, "clip-1").parent.name == "videos"
    with folder.video_lock(tmp_path, "clip-1"):
        other = folder.video_lock(tmp_path, "clip-1")
        try:
            other.acquire()
            acquired = True
        except Exception:
            acquired = False
        assert not acquired, "a second process skips a video that is being worked on"


def test_every_data_file_gets_one_mode_however_it_was_written(dataset_folder, record, tmp_path):
    """Appended, rewritten after an edit (a temporary file renamed over it), exported or logged: 0644
    less the umask, never mkstemp's 0600 for some files and 0644 for others."""
    import os
    import stat

    from llava_video_app.jsonl import JsonlStore, data_file_mode, write_json_atomic

    appended = folder.split_files(dataset_folder)[0]
    replaced = dataset_folder / "0_30_s_test_oe_qa_processed.jsonl"
    JsonlStore(replaced).replace([record("o1", duration=12)], remove_ids=["x"])
    manifest = folder.write_manifest(dataset_folder, "clip-1", {"status": "done"})
    folder.log_failure(dataset_folder, tmp_path / "clip.mp4", "broken", None, None)
    exported = folder.export_json(dataset_folder)[0]
    zipped = folder.export_zip(dataset_folder, tmp_path / "run.zip")
    atomic = write_json_atomic(tmp_path / "plain.json", [])
    modes = {path.name: stat.S_IMODE(os.stat(path).st_mode)
             for path in (appended, replaced, manifest, dataset_folder / "errors.log", exported, zipped, atomic)}
    plain = tmp_path / "made-by-open"
    os.close(os.open(plain, os.O_CREAT | os.O_WRONLY, 0o644))  # 0644 less the umask, as the kernel applies it
    assert set(modes.values()) == {data_file_mode()} == {stat.S_IMODE(os.stat(plain).st_mode)}, modes


def test_the_export_zip_goes_beside_the_folder_never_inside_it(dataset_folder):
    import pytest

    default = folder.export_zip(dataset_folder)
    assert default == dataset_folder.resolve().with_suffix(".zip") and default.is_file()
    with pytest.raises(ValueError, match="outside the folder it zips"):
        folder.export_zip(dataset_folder, dataset_folder / "data.zip")
    with pytest.raises(ValueError, match="outside the folder it zips"):
        folder.export_zip(dataset_folder, dataset_folder / "sub" / ".." / "data.zip")
    assert not list(dataset_folder.rglob("*.zip"))
