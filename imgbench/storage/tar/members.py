"""ustar members as this backend writes them: the exact 512-byte header of a regular file, and padding.

Built from one template that ``tarfile`` makes once (mode 0644, mtime 0, no
owner), so writing a member costs a few byte copies, and a verified read can
compare a member's header with the one it must be, byte for byte.
"""

from __future__ import annotations

import tarfile

from imgbench.core.errors import UnsupportedError

BLOCK = 512
#: tar end-of-archive: two zero blocks
EOA = bytes(2 * BLOCK)
#: ustar size field: 11 octal digits
MAX_MEMBER = 8**11 - 1


def _ustar_template() -> tuple[bytes, int]:
    info = tarfile.TarInfo("")
    info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, 0, "", ""
    header = bytearray(info.tobuf(format=tarfile.USTAR_FORMAT))
    header[124:136] = b"\0" * 12
    header[148:156] = b" " * 8
    return bytes(header), sum(header)


_TEMPLATE, _TEMPLATE_SUM = _ustar_template()


def member_header(name: bytes, size: int) -> bytes:
    """A ustar header for a regular file ``name`` of ``size`` bytes (what tarfile writes, minus its cost)."""
    if size > MAX_MEMBER:
        raise UnsupportedError(f"an encoded image of {size} bytes is too large for a tar member (limit 8 GiB)")
    size_field = b"%011o\0" % size
    header = bytearray(_TEMPLATE)
    header[: len(name)] = name
    header[124:136] = size_field
    header[148:156] = b"%06o\0 " % (_TEMPLATE_SUM + sum(name) + sum(size_field))
    return bytes(header)


def pad(n: int) -> int:
    """Zero bytes after ``n`` bytes of member data, up to the next block."""
    return -n % BLOCK
