"""IR passes, one module each. Each takes a ``Function`` and changes or analyses it in place."""
from .dce import eliminate_dead_code  # noqa: F401
from .buffer_extents import BufferUse, analyze_buffers  # noqa: F401
