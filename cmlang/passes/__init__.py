"""IR passes and analyses, one module each; ``pipeline`` lists the passes every kernel goes
through, in order, and names the analyses.  Passes take a ``Function`` and change or check it
in place; analyses read it and return a result (the code generators import them from here).
Nothing here imports the code generators or llvmlite."""
from .dce import eliminate_dead_code  # noqa: F401
from .buffer_extents import BufferUse, affine_extents, analyze_buffers  # noqa: F401
from .constants import constant_value  # noqa: F401
from .induction import induction_loops  # noqa: F401
from .alignment import known_multiple  # noqa: F401
from .group_use import uses_groups  # noqa: F401
from .pipeline import PASSES, ANALYSES, run_pipeline  # noqa: F401
