"""The LLaVA-Video app: `python app.py [--model ...] [--quant ...] [--device ...] [--port ...]`.

Serves on http://127.0.0.1:7860 by default (--host / --share to open it up); the model loads in the
background while the page shows its progress. All options: `python app.py --help`; the app itself
lives in llava_video_app/ui.py.
"""

from llava_video_app.ui import main

if __name__ == "__main__":
    main()
