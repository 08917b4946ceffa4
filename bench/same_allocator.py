"""What qdqbert::retain_freed_memory() does for the C++ benchmarks, done for the Python ones, so that both
sides of a comparison allocate alike: glibc keeps freed blocks mapped (M_MMAP_MAX 0, M_TRIM_THRESHOLD
INT_MAX) instead of returning them to the kernel and page-faulting them in again on the next call.
QDQBERT_RETURN_FREED_MEMORY=1 turns it off on both sides."""
import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


def retain_freed_memory():
    if os.environ.get("QDQBERT_RETURN_FREED_MEMORY", "0") != "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
