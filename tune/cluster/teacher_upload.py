"""A local teacher for a cluster sweep: `./launch.sh sweep` uploads it to the shared storage (named by its
content) and passes its URI to the job, which does not carry this machine's results/ folder.

    python -m tune.cluster.teacher_upload --space FILE --storage URI [--teacher PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cache import file_sha256
from core.errors import UserError, cli_errors
from core.models import require_teacher_path
from tune.cluster import storage
from tune.space import SearchSpace, load_space


def teacher_upload(space: SearchSpace, storage_root: str) -> tuple[Path, str] | None:
    """(local teacher file, the URI to upload it to) when a distillation space names a teacher on this
    machine: a cluster job does not carry results/, so `./launch.sh sweep` uploads it and passes
    `--teacher URI` instead of letting the sweep fail (or retrain). The URI is named by the file's content:
    one teacher is stored once, and two teachers never share a name."""
    path = space.teacher.checkpoint
    if not space.distillation or path is None or storage.is_uri(path):
        return None
    if not Path(path).exists():
        raise UserError(
            f"{space.source}: teacher.checkpoint {path} is not on this machine; train and export it "
            f"here first, or pass --teacher with a URI in the storage (s3://...)"
        )
    local = Path(require_teacher_path(str(Path(path).resolve())))
    return local, storage.join(storage_root, "teachers", file_sha256(local)[:16], local.name)


def main(argv: list[str] | None = None) -> None:
    """Prints `LOCAL_FILE<tab>URI` for a local teacher that a cluster sweep needs in the storage, else
    nothing."""
    parser = argparse.ArgumentParser(prog="python -m tune.cluster.teacher_upload", description=main.__doc__)
    parser.add_argument("--space", required=True)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--teacher", help="overrides the space's teacher.checkpoint, as in tune.search")
    args = parser.parse_args(argv)
    with cli_errors():
        space = load_space(args.space)
        if args.teacher:
            space.teacher.checkpoint = args.teacher
        upload = teacher_upload(space, args.storage)
        if upload:
            print(f"{upload[0]}\t{upload[1]}")


if __name__ == "__main__":
    main()
