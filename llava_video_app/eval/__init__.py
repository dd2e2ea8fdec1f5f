"""`llava-video eval`: the model on the standard video benchmarks, as lmms-eval scores them.

    benchmarks.py   the annotation files as distributed -> Samples (a missing video: a skip, said)
    prompts.py      each benchmark's question text (lmms-eval's tasks for llava_vid)
    answers.py      each benchmark's answer parser -> a letter, or None (unparseable)
    run.py          a resumable run into a folder in this process, records with provenance
    ray_run.py      the same on Ray: one engine per GPU, the same records
    stats.py        accuracy, bootstrap intervals, paired differences
    compare.py      `eval compare RUN_A RUN_B`
"""
