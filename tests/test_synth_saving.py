"""A result in an output folder (synth/saving.py): edits in the UI replace the video's records, the
manifest reads back, the folder zips."""

from __future__ import annotations

import zipfile

from llava_video_app import output_folder as folder
from llava_video_app.dataset_report import check_dataset
from llava_video_app.synth.batch import run_batch
from llava_video_app.synth.plan import SynthOptions
from llava_video_app.synth.result import video_id_for
from llava_video_app.synth.saving import export_run, load_result, save_edited_pairs


def test_edited_pairs_replace_the_videos_records(synth_videos, scripted_engine, tmp_path):
    out = tmp_path / "out"
    run_batch(synth_videos["root"], out, SynthOptions(types=("Temporal", "Plot Understanding", "Attribute Change")),
              engine=scripted_engine(), progress=False)
    vid = video_id_for("short.mp4")
    result = load_result(out, vid)  # back from the manifest, as the UI would
    pairs = [p.to_dict() for p in result.pairs]
    pairs[0]["question"] = "Edited question?"
    pairs[1]["keep"] = False
    save_edited_pairs(out, result, pairs)
    oe = [r for _, r in folder.iter_records(out) if r["task"] == "oe"]
    mine = {r["question_type"]: r["conversations"][0]["value"] for r in oe if r["video_id"] == vid}
    assert mine == {"Temporal": "<image>\nEdited question?", "Attribute Change": "<image>\nWhat about attribute change?"}
    assert len([r for r in oe if r["video_id"] != vid]) == 3  # the other video is untouched
    assert check_dataset(out)[1] == []
    assert load_result(out, vid).pairs[0].question == "Edited question?"
    zip_path = export_run(out)
    names = zipfile.ZipFile(zip_path).namelist()
    assert "0_30_s_local_oe_qa_processed.json" in names and f"videos/{vid}.json" in names
