"""llava-video-app: LLaVA-Video in people's hands (app, CLI, synthetic data)."""

__version__ = "0.1.0"
