"""The Gradio app: a video, a task, an answer streamed token by token, follow-ups, Stop, a named API,
and a tab that turns the video into synthetic training data.

    app.py           the page (build_ui), launch, run_app (`python app.py`, `llava-video app`)
    ask_tab.py       the Ask tab's handlers (VideoChat), layout and the /ask, /caption, /ask_type API
    conversation.py  the tasks, the conversation kept per browser tab, chat messages, the frame gallery
    player.py        the video player as a time axis: seek links in answers, the seek script, the trim bar
    frame_inspector.py  a gallery frame shown large with its time, previous/next, seeking the player
    model_view.py    "What the model sees": `llava-video inspect` for the video and settings on screen
    synth_tab.py     the "Generate synthetic QA" tab and the /synth API
    serving.py       the engine loaded in the background, per-tab sessions, the status line, and the
                     ModelRunner: the model calls, each wrapped once for the GPU, streamed from a thread
    zerogpu.py       ZeroGPU: durations per call, a Stop that reaches a forked worker, EngineOnGpu
"""
