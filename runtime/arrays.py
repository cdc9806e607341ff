"""Device arrays: a buffer on one device plus the numpy shape and dtype it holds.

``to_device`` copies a numpy array over once; kernels then take the ``DeviceArray``
without further copies, and ``.numpy()`` copies the current contents back.  Launches
on device arrays do not wait; ``.numpy()`` still sees their results because each
device has one in-order queue, so the copy runs after them.

On the dpctl backend the buffer is USM device memory, and the array offers
``__sycl_usm_array_interface__`` so that SYCL libraries (dpnp) can take it as it is.
"""
from __future__ import annotations

import math

import numpy as np

from cmlang.errors import LaunchError

from .device import Device, get_device, resolve_device


class DeviceArray:
    """A C-contiguous array living in a device buffer."""

    __slots__ = ("buffer", "shape", "dtype", "device", "size", "__weakref__")

    def __init__(self, buffer, shape, dtype, device: Device):
        self.buffer = buffer
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.device = device
        self.size = math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d DeviceArray")
        return self.shape[0]

    def numpy(self) -> np.ndarray:
        """A new numpy array with the buffer's current contents (waits for the device)."""
        host = np.empty(self.shape, self.dtype)
        self.device.copy_to_host(host, self.buffer)
        return host

    @property
    def __sycl_usm_array_interface__(self) -> dict:
        interface = getattr(self.buffer, "__sycl_usm_array_interface__", None)
        if interface is None:
            raise AttributeError(f"a DeviceArray on {self.device.spec} is not USM memory")
        return dict(interface, data=(interface["data"][0], False), shape=self.shape,
                    typestr=self.dtype.str, strides=None)

    def __array__(self, dtype=None, copy=None):
        if copy is False:
            raise ValueError("a DeviceArray cannot become a numpy array without a copy")
        host = self.numpy()
        return host if dtype is None else host.astype(dtype, copy=False)

    def __repr__(self):
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype}, device={self.device.spec})"


def to_device(array, device=None) -> DeviceArray:
    """Copy a numpy array (or anything ``np.asarray`` takes) to a device."""
    device = _device(device)
    host = np.ascontiguousarray(array)
    return DeviceArray(device.upload(host), host.shape, host.dtype, device)


def empty(shape, dtype, device=None) -> DeviceArray:
    """An uninitialised device array; ``dtype`` is a numpy dtype or a cmlang scalar type."""
    device = _device(device)
    shape, dtype = _shape(shape), _dtype(dtype)
    return DeviceArray(device.alloc(math.prod(shape) * dtype.itemsize), shape, dtype, device)


def zeros(shape, dtype, device=None) -> DeviceArray:
    """A zero-filled device array."""
    shape, dtype = _shape(shape), _dtype(dtype)
    return to_device(np.zeros(shape, dtype), device)


def _device(device) -> Device:
    return get_device() if device is None else resolve_device(device)


def _shape(shape) -> tuple:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if any(int(n) < 0 for n in shape):
        raise LaunchError(f"negative dimension in shape {shape}")
    return tuple(int(n) for n in shape)


def _dtype(dtype) -> np.dtype:
    # cmlang scalar types (cm.f32, cm.bf16) carry the numpy dtype that holds them.
    return np.dtype(getattr(dtype, "np_dtype", dtype))
