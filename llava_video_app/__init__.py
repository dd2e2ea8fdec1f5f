"""llava-video-app: LLaVA-Video in people's hands (app, CLI, synthetic data)."""

import logging

__version__ = "0.1.0"


class _TorchaoEnumNotice(logging.Filter):
    """Drops torch's notice that torchao registers its Enums as pytree constants (torch 2.14 + torchao 0.18):
    transformers imports torchao whenever it is installed, so two such lines led every command's output, and
    no user can act on them. torch's other pytree warnings still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("%s is an Enum subclass and is now natively supported by torch.compile")


# On the logger itself, before torch exists: loggers are created once and kept, filters with them.
logging.getLogger("torch.utils._pytree").addFilter(_TorchaoEnumNotice())
