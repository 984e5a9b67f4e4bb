"""Send a folder back from the GPU machine, which returns at most 8 files of 16 MiB each.

The folder goes into one tar, cut into parts; `cat NAME.tar.part-* | tar -x` rebuilds it.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


def write_tar_parts(folder: Path, out: Path, name: str, prefix: str = "", part_mib: int = 15) -> list[str]:
    """Tar every file under `folder` (paths relative to it, under `prefix`) into `out/NAME.tar.part-*`.

    Example:
        >>> import tempfile
        >>> src, dst = (Path(tempfile.mkdtemp()) for _ in range(2))
        >>> _ = (src / "a.txt").write_text("hello")
        >>> write_tar_parts(src, dst, "bundle")
        ['bundle.tar.part-0']
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for item in sorted(folder.rglob("*")):
            if item.is_file():
                tar.add(item, arcname=prefix + str(item.relative_to(folder)))
    data, size, names = buffer.getvalue(), part_mib * 2**20, []
    out.mkdir(parents=True, exist_ok=True)
    for index, start in enumerate(range(0, len(data), size)):
        part = f"{name}.tar.part-{index}"
        (out / part).write_bytes(data[start:start + size])
        names.append(part)
    return names
