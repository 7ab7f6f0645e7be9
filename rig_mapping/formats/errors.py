"""The one error type every reader/writer raises for bad files."""

from __future__ import annotations

from pathlib import Path


class FormatError(ValueError):
    """A motion file is malformed or cannot be written. The message names the file and the line (text
    formats) or field (JSON/npz) at fault, then the fix."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
