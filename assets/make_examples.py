"""Make the app's example videos (committed, a few tens of KB each): python assets/make_examples.py

square.mp4: a square moving left to right while its colour goes red -> yellow -> green -> blue.
pan.mp4: a camera panning left to right over hills and trees.
"""

from pathlib import Path

from llava_video_app.sample_videos import make_video

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    for name, pattern in (("square.mp4", "moving_square"), ("pan.mp4", "pan")):
        path = make_video(HERE / name, seconds=8, fps=25, size=(320, 240), pattern=pattern, faststart=True)
        print(f"{path} {path.stat().st_size / 1024:.0f} KiB")
