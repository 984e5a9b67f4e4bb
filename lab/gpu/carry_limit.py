"""The size bound of a folder carried to the GPU machine (a device call carries at most 64 MiB).

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "small.bin").write_bytes(b"x" * 1024)
    >>> round(checked_carry_size(folder, hint="carry less"), 4)
    0.001
"""

from __future__ import annotations

from pathlib import Path

from es_rerank.errors import DatasetError

LIMIT_MIB = 62  # of the 64 MiB a call may carry, the repository itself takes the rest


def checked_carry_size(folder: Path, hint: str) -> float:
    """The folder's size in MiB; a DatasetError with `hint` when it is over `LIMIT_MIB`."""
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
    if size > LIMIT_MIB:
        raise DatasetError(f"{folder} holds {size:.1f} MiB, over the {LIMIT_MIB} MiB a device call can carry",
                           hint=hint)
    return size
