"""LZF decompression for PCD `binary_compressed` files: the C `lzf` module (python-neo-lzf) when
it is installed, else this pure-Python decoder of liblzf's format (no wheel of any LZF package
exists for 32-bit ARM, so the device path must not need one)."""
from __future__ import annotations

from edgead.core.errors import DataError


def decompress(data: bytes, size: int, where: str = "") -> bytes:
    """`data` (one LZF block) -> exactly `size` bytes; DataError when the block is damaged."""
    try:
        import lzf
    except ImportError:
        return _decompress(data, size, where)
    out = lzf.decompress(data, size)
    if out is None or len(out) != size:
        raise DataError(f"{where}: the compressed point data is damaged (LZF block does not decode to {size} bytes); "
                        "re-export the scan")
    return out


def _decompress(src: bytes, size: int, where: str) -> bytes:
    out = bytearray(size)
    ip = op = 0
    try:
        while ip < len(src):
            ctrl = src[ip]
            ip += 1
            if ctrl < 32:  # a literal run of ctrl + 1 bytes
                n = ctrl + 1
                if op + n > size or ip + n > len(src):
                    raise IndexError
                out[op : op + n] = src[ip : ip + n]
                ip, op = ip + n, op + n
                continue
            n = ctrl >> 5  # a back reference: length, then offset
            if n == 7:
                n += src[ip]
                ip += 1
            ref = op - ((ctrl & 0x1F) << 8) - src[ip] - 1
            ip += 1
            n += 2
            if ref < 0 or op + n > size:
                raise IndexError
            if ref + n <= op:
                out[op : op + n] = out[ref : ref + n]
            else:  # overlapping: the period repeats
                period = bytes(out[ref:op])
                out[op : op + n] = (period * (n // len(period) + 1))[:n]
            op += n
    except IndexError:
        op = -1
    if op != size:
        raise DataError(f"{where}: the compressed point data is damaged (LZF block does not decode to {size} bytes); "
                        "re-export the scan")
    return bytes(out)
