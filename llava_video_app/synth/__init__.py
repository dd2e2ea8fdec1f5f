"""Synthetic video instruction data: the LLaVA-Video-178K recipe, run with the local model.

    video --1 fps frames--> level-1 descriptions (10 s windows, with frames)
          --> level-2 descriptions (30 s windows, text only) --> level-3 = the detailed caption
          --> QA pairs from the caption (text only, the 16 question types) --> filters
          --> records: caption, open-ended QA, multiple-choice QA

    plan.py     the options (token limits included) and the windows of each level
    prompts.py  every text sent to the model (PROMPT_VERSION) and the functions that fill them in
    qa.py       a QA call's output -> pairs: JSON parsing and repair, filters, multiple choice
    result.py   what a run made of one video (SynthResult), its records, manifest and ids
    events.py   the progress of a run, one class per kind of event
    recipe.py   the model calls in order for one video (`synthesize`, `run_synthesis`)
    saving.py   a result into an output folder (../output_folder.py) and back
    sources.py  which videos a run covers: a folder, glob, manifest or URL (`list_videos`)
    one_video.py  one video into an output folder, the step both runners repeat (`process_video`)
    batch.py    the videos one after another in this process, resumable (`run_batch`)
    ray_runner.py  the same on Ray actors, one engine each (`run_ray`; imports ray only when run)
"""
