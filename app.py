"""The LLaVA-Video app: `python app.py [--model ...] [--quant ...] [--device ...] [--port ...]`.

Serves on http://127.0.0.1:7860 by default (--host / --share to open it up); the model loads in the
background while the page shows its progress. The flags are those of `llava-video app` (all of them:
`python app.py --help`); the app itself lives in llava_video_app/web/.
"""

from llava_video_app.cli import app_main

if __name__ == "__main__":
    app_main()
