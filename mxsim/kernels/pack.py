"""Bit-level packing of element codes (numba): one little-endian bit stream, element j in
bits [j*b, (j+1)*b), bit n = bit (n mod 8) of byte (n div 8). See the contract."""

from numba import njit

from .dequant import KIND_BFP, KIND_MXINT


@njit(cache=True, inline="always")
def _field(c, b, kind):
    """b-bit field of one code (c is the code's byte as 0..255)."""
    if kind == KIND_BFP:
        v = c - 256 if c >= 128 else c  # int8 sign*magnitude
        return ((1 << (b - 1)) | -v) if v < 0 else v
    return c & ((1 << b) - 1)  # two's complement truncation; MXFP patterns already fit


@njit(cache=True)
def pack_bits(codes, b, kind, stream):
    acc = 0  # pending bits, fewer than 8 + b of them
    nacc = 0
    pos = 0
    for i in range(codes.size):
        acc |= _field(int(codes[i]), b, kind) << nacc
        nacc += b
        while nacc >= 8:
            stream[pos] = acc & 0xFF
            pos += 1
            acc >>= 8
            nacc -= 8
    if nacc > 0:
        stream[pos] = acc & 0xFF


@njit(cache=True)
def unpack_bits(stream, b, kind, out):
    """Inverse of pack_bits; out gets each code's byte (int8 two's complement for MXINT and
    BlockFP, the raw pattern for MXFP)."""
    mask = (1 << b) - 1
    top = 1 << (b - 1)
    acc = 0
    nacc = 0
    pos = 0
    for i in range(out.size):
        while nacc < b:
            acc |= int(stream[pos]) << nacc
            pos += 1
            nacc += 8
        f = acc & mask
        acc >>= b
        nacc -= b
        if kind == KIND_MXINT:
            v = f - (1 << b) if f & top else f
        elif kind == KIND_BFP:
            v = -(f & (top - 1)) if f & top else f
        else:
            v = f
        out[i] = v & 0xFF
