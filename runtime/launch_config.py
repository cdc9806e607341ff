"""Launch configurations: what ``k[...]`` takes, and keyword arguments at launch.

One parser for every launchable thing (``@cm.kernel``, a ``CompiledKernel``, a package
kernel), so the forms cannot drift apart:

- ``k[grid]``: an int or a tuple/list of 1 to 3 ints, always the grid of CM threads
  (``k[(4, 3)]`` and ``k[4, 3]`` are the same 4 x 3 grid);
- ``k[grid, cm.group(gx, gy, gz)]``: the grid in groups of that many CM threads.

Anything else that could be read two ways (``k[(4, 3), (2, 1)]``, ``k[grid, None]``,
``k[4, (2,)]``, bools, floats, sizes below 1, more than 3 dimensions) is a
``LaunchError`` naming these forms: earlier a pair meant (grid, group), and a 2-D grid
whose sizes happened to divide ran as a 1-D grid in groups, silently.

This module belongs to the runtime (no compiler imports); ``cmlang`` re-exports ``group``.
"""
from __future__ import annotations

import inspect
import operator

import numpy as np

from cmlang.errors import LaunchError

FORMS = ("k[n], k[nx, ny], k[(nx, ny, nz)] (always the grid of CM threads) or "
         "k[grid, cm.group(gx, gy, gz)] (the grid in groups)")


class group:
    """The CM threads of one group: ``cm.group(gx)``, ``cm.group(gx, gy)``,
    ``cm.group(gx, gy, gz)``. Used as ``k[grid, cm.group(...)]``."""

    __slots__ = ("dims",)

    def __init__(self, *dims):
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        self.dims = sizes(dims, "group", "cm.group(...)")

    def __eq__(self, other):
        return isinstance(other, group) and other.dims == self.dims

    def __hash__(self):
        return hash(("cm.group", self.dims))

    def __repr__(self):
        return f"cm.group({', '.join(map(str, self.dims))})"


def _index(n):
    """``n`` as an int, or None for anything that is not an integer (bools included)."""
    if type(n) is int:
        return n
    if isinstance(n, (bool, np.bool_)):
        return None
    try:
        return operator.index(n)
    except TypeError:
        return None


def sizes(value, what, where) -> tuple:
    """``value`` (an int or a sequence of 1-3 ints) as a tuple of positive ints."""
    dims = value if isinstance(value, (tuple, list)) else (value,)
    if not 1 <= len(dims) <= 3:
        raise LaunchError(f"{where}: {what} must have 1 to 3 dimensions, got {value!r}")
    result = tuple(_index(n) for n in dims)
    if None in result:
        raise LaunchError(f"{where}: {what} must be an int or a tuple of ints, got {value!r}")
    if min(result) < 1:
        raise LaunchError(f"{where}: {what} sizes must be positive, got {value!r}")
    return result


def parse(config, name) -> tuple:
    """``k[config]`` of kernel ``name`` -> (grid tuple, group tuple or None)."""
    if type(config) is int:  # the common case, first
        if config < 1:
            raise _refused(name, config, "grid sizes must be positive")
        return (config,), None
    if type(config) is tuple and 1 < len(config) <= 3 and \
            all([type(n) is int and n > 0 for n in config]):
        return config, None      # k[nx, ny], k[nx, ny, nz]
    if isinstance(config, group):
        raise _refused(name, config, "a group without a grid")
    parts = config if isinstance(config, tuple) else (config,)
    grouping = None
    if parts and isinstance(parts[-1], group):
        grouping, parts = parts[-1].dims, parts[:-1]
        if len(parts) == 1 and isinstance(parts[0], (tuple, list)):
            parts = tuple(parts[0])  # k[(nx, ny), cm.group(...)]
    elif len(parts) == 1 and isinstance(parts[0], list):
        parts = tuple(parts[0])      # k[[nx, ny]]
    grid = tuple(_index(p) for p in parts)
    if not grid or None in grid:
        raise _refused(name, config, "not a launch configuration")
    if len(grid) > 3:
        raise _refused(name, config, "a grid has 1 to 3 dimensions")
    if min(grid) < 1:
        raise _refused(name, config, "grid sizes must be positive")
    return grid, grouping


def call_form(name, grid, grouping) -> tuple:
    """``k.launch(grid, ..., group=grouping)`` -> (grid tuple, group tuple or None): the
    grid and the group are named there, so ints and tuples of ints both mean sizes."""
    where = f"{name}.launch()"
    grid = sizes(grid, "grid", where)
    if isinstance(grouping, group):
        return grid, grouping.dims
    return grid, None if grouping is None else sizes(grouping, "group", where)


def _refused(name, config, problem) -> LaunchError:
    """The error for ``k[config]``, showing the configuration as the caller wrote it."""
    text = repr(config)
    if isinstance(config, tuple) and len(config) > 1:
        text = text[1:-1]  # k[4, 3]
    if len(text) > 80:
        text = text[:77] + "..."
    return LaunchError(f"{name}[{text}]: {problem}; launch forms: {FORMS}")


# ---------------------------------------------------------------------------
# Keyword arguments at launch

class Binder:
    """Binds launch arguments (positional and by parameter name) to a kernel's parameters."""

    __slots__ = ("name", "names", "_signature")

    def __init__(self, name, names):
        self.name = name
        self.names = tuple(names)
        self._signature = None

    def bind(self, args, kwargs) -> tuple:
        """The arguments in parameter order, checked as Python checks a call."""
        if not kwargs:
            if len(args) != len(self.names):
                raise LaunchError(f"{self.name}() takes {len(self.names)} argument"
                                  f"{'' if len(self.names) == 1 else 's'} ({', '.join(self.names)}), "
                                  f"got {len(args)}")
            return args
        if self._signature is None:
            self._signature = inspect.Signature(
                [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in self.names])
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise LaunchError(f"{self.name}({', '.join(self.names)}): {exc}") from None
        return tuple(bound.arguments[n] for n in self.names)
