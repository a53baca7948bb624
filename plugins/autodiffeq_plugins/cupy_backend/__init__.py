"""The CuPy backend plugin (GPU): arrays are ``cupy.ndarray`` on the current CUDA device.

Install with the extra ``cupy`` (``pip install "autodiffeq[cupy]"``, which pulls
``cupy-cuda12x``) or install the CuPy wheel that matches your CUDA yourself
(``cupy-cuda11x``, ``cupy-cuda12x``, ...; see CuPy's installation guide).

Registering the backend imports nothing: ``import autodiffeq``, ``autodiffeq plugins`` and
solves on other backends never import CuPy. Whether the backend is usable is decided by
:func:`gpu_unavailable_reason`, which asks the CUDA driver directly (``libcuda`` through
``ctypes``: is there a driver, does it initialise, how many devices, is it new enough for the
installed CuPy wheel) and reads the wheel's name from the package metadata, so listing the
plugins stays cheap. The factory then imports CuPy and makes one allocation and one kernel
launch; a failure there (a broken installation, an exhausted device) is reported as
:class:`~autodiffeq.BackendUnavailable` with CuPy's own message.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import importlib.util
import re
from typing import Any

import autodiffeq as ade

#: how to install CuPy (the reason given when it is missing)
INSTALL_HINT = ("pip install 'autodiffeq[cupy]' (cupy-cuda12x), or the CuPy wheel matching your "
                "CUDA, e.g. cupy-cuda11x")


def cuda_major_of_wheel(name: str) -> int | None:
    """The CUDA major version a CuPy distribution is built for, from its name:
    ``cupy-cuda12x`` -> 12, ``cupy-cuda11x`` -> 11, the older ``cupy-cuda102`` -> 10;
    ``None`` for ``cupy`` (a source build) or an unrecognised name."""
    match = re.fullmatch(r"cupy-cuda(\d+)x?", name.lower())
    if match is None:
        return None
    digits = match.group(1)
    return int(digits[:2] if len(digits) > 2 else digits)


def _cupy_wheel_cuda_major() -> tuple[str, int | None]:
    """The installed CuPy distribution's name and the CUDA major version it was built for."""
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name == "cupy" or name.startswith("cupy-"):
            return name, cuda_major_of_wheel(name)
    return "cupy", None


def _driver_problem() -> str | None:
    """Ask the CUDA driver API (``libcuda``) whether a device can be used, without CuPy."""
    lib = None
    for candidate in ("libcuda.so.1", "libcuda.so", "nvcuda.dll", "libcuda.dylib"):
        try:
            lib = ctypes.CDLL(candidate)
            break
        except OSError:
            continue
    if lib is None:
        return ("no NVIDIA driver found (libcuda could not be loaded): this machine has no "
                "usable GPU")

    def error_name(code: int) -> str:
        text = ctypes.c_char_p()
        try:
            if lib.cuGetErrorName(code, ctypes.byref(text)) == 0 and text.value:
                return f"{text.value.decode()} ({code})"
        except AttributeError:
            pass
        return f"error {code}"

    code = lib.cuInit(0)
    if code != 0:
        return f"the CUDA driver failed to initialise: cuInit returned {error_name(code)}"
    count = ctypes.c_int(0)
    code = lib.cuDeviceGetCount(ctypes.byref(count))
    if code != 0:
        return f"cuDeviceGetCount returned {error_name(code)}"
    if count.value == 0:
        return "the CUDA driver reports no device"
    version = ctypes.c_int(0)
    if lib.cuDriverGetVersion(ctypes.byref(version)) == 0:
        wheel, major = _cupy_wheel_cuda_major()
        driver_major = version.value // 1000
        if major is not None and driver_major < major:
            return (f"the CUDA driver supports CUDA {driver_major}.{version.value % 1000 // 10} "
                    f"but the installed {wheel} needs CUDA {major}; install the CuPy wheel for "
                    f"CUDA {driver_major} or update the driver")
    return None


@functools.lru_cache(maxsize=1)
def gpu_unavailable_reason() -> str | None:
    """``None`` when CuPy is installed and the CUDA driver offers a device it can use, else
    why not (CuPy missing, no driver, driver failing to initialise, no device, driver too old
    for the installed wheel). Cached: the answer does not change within a process."""
    if importlib.util.find_spec("cupy") is None:
        return f"CuPy is not installed ({INSTALL_HINT})"
    try:
        return _driver_problem()
    except Exception as exc:  # a probe must never break listing
        return f"the CUDA driver could not be queried: {type(exc).__name__}: {exc}"


def _make_backend() -> Any:
    from .backend import CupyBackend

    return CupyBackend()


@ade.hookimpl
def autodiffeq_register_backends(register: Any) -> None:
    register(
        ade.BackendSpec(
            name="cupy",
            factory=_make_backend,
            probe=gpu_unavailable_reason,
            device="gpu",
            capabilities=("lu", "sparse", "rng"),
            description=("CuPy arrays on the current CUDA device; dense LU by cuSOLVER "
                         "(getrf/getrs), sparse LU factored on the host by SuperLU and solved "
                         "on the device; cupy.random draws; extra 'cupy'."),
        )
    )
