"""cmlang's typed IR: data structures (core), the op catalogue (ops), text form (printer/parser)."""
from .core import Location, Value, Op, Block, Function, Builder, walk_block  # noqa: F401
from .ops import OPS  # noqa: F401
