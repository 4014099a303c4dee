"""What a sweep's data is, file by file: every image and mask it reads (training and test sets) and its
`val_groups` file, each by path, size and SHA-256, so that a resumed sweep can tell its data changed and
say what changed (tune/sweep/pipeline.py binds a sweep to it, as to its space)."""

from __future__ import annotations

from pathlib import Path

from core.data import PolypData
from core.files import file_digest

VAL_GROUPS_KEY = "val_groups"  # never a path under a data root (those start with TrainDataset/ or TestDataset/)


def data_files(data: PolypData, val_groups: str | None) -> dict[str, dict]:
    """{path relative to the data root (or "val_groups"): {size, sha256}} for every file trials read."""
    pairs = [*data.train, *(pair for pairs in data.test_sets.values() for pair in pairs)]
    files = {str(path.relative_to(data.root)): path for pair in pairs for path in (pair.image, pair.mask)}
    record = {rel: file_digest(path) or {} for rel, path in sorted(files.items())}
    if val_groups:
        record[VAL_GROUPS_KEY] = {"path": str(val_groups), **(file_digest(Path(val_groups)) or {})}
    return record


def data_changes(before: dict[str, dict], now: dict[str, dict]) -> str | None:
    """What differs between two `data_files` records, in a few words ("2 files added: a.png, b.png; the
    val_groups file groups.csv changed"), or None when they are the same."""
    if before == now:
        return None
    parts = []
    added = [rel for rel in now if rel not in before and rel != VAL_GROUPS_KEY]
    removed = [rel for rel in before if rel not in now and rel != VAL_GROUPS_KEY]
    changed = [rel for rel in now if rel in before and now[rel] != before[rel] and rel != VAL_GROUPS_KEY]
    for files, what in ((added, "added"), (removed, "removed"), (changed, "changed")):
        if files:
            shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
            parts.append(f"{len(files)} file{'s' if len(files) > 1 else ''} {what}: {shown}")
    groups_then, groups_now = before.get(VAL_GROUPS_KEY), now.get(VAL_GROUPS_KEY)
    if groups_then != groups_now:
        if groups_then is None or groups_now is None:
            parts.append(f"val_groups {'set' if groups_then is None else 'no longer set'}")
        else:
            parts.append(f"the val_groups file {groups_now['path']} changed")
    return "; ".join(parts)
