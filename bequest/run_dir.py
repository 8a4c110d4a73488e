"""The run directory: what makes a folder bequest's, and what starting, resuming or replacing a run may touch.

A folder is a run directory only if it holds bequest's marker (`.bequest-run.json`, with the run's
id), written before anything else when a run starts. `--overwrite` removes only the entries bequest
writes there (the marker, recipe, environment and results files, logs, checkpoints, trackers, and
the students' exported folders); anything else in the folder stays. `--resume` continues only a
run started with the same recipe on the same data.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

import yaml

from bequest import __version__
from bequest.errors import BequestError
from bequest.export import EXPORT_RECORD
from bequest.io import Damaged, check_manifest, write_json

MARKER = ".bequest-run.json"
RECIPE_FILE = "recipe.yaml"
RESULTS_FILE = "results.json"
ENVIRONMENT_FILE = "environment.json"
# what bequest writes at the top of a run directory, besides the students' folders
RUN_ENTRIES = (MARKER, RECIPE_FILE, RESULTS_FILE, "logs", "checkpoints", "trackers")
RESERVED_NAMES = frozenset({*RUN_ENTRIES, ENVIRONMENT_FILE, "teacher", "report"})


CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint in a stage's folder (half-written ones are hidden `.*.tmp` folders)."""
    found = [(int(m.group(1)), p) for p in Path(directory).glob("checkpoint-*") if (m := CHECKPOINT_NAME.match(p.name))]
    return max(found)[1] if found else None


def check_checkpoint(path: Path) -> None:
    """Refuse, in one line, a checkpoint whose files are not the ones written (truncated, altered, missing)."""
    try:
        check_manifest(path)
    except Damaged as damage:
        raise BequestError(f"checkpoint {path} is damaged ({damage}): delete {path} to train this stage again "
                           "from its start, or start the run over with --overwrite") from None


def is_run_dir(path: Path) -> bool:
    return (Path(path) / MARKER).is_file()


def write_marker(run_dir: Path, recipe_text: str, students: list[str]) -> None:
    """Claim the folder for a new run: the first file written, holding the recipe that `--resume` must match."""
    write_json(run_dir / MARKER, {"run_id": uuid.uuid4().hex, "bequest": __version__, "students": students,
                                  "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "recipe": recipe_text})


def _marker(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / MARKER).read_text())
    except (OSError, ValueError):
        raise BequestError(f"the bequest marker {run_dir / MARKER} is damaged: start a new run with --output-dir") from None


def bequest_entries(run_dir: Path) -> list[Path]:
    """The entries of a run directory that bequest wrote: its own files and the students' exports."""
    students = _marker(run_dir).get("students", [])
    found = [run_dir / name for name in RUN_ENTRIES if (run_dir / name).exists()]
    found += [run_dir / name for name in students if (run_dir / name / EXPORT_RECORD).is_file()]
    found += sorted(run_dir.glob("environment*.json")) + sorted(run_dir.glob(".*.tmp"))
    return list(dict.fromkeys(found))


def _normalised(recipe_text: str) -> dict:
    """A stored or current recipe with its paths made absolute, so `runs/x` and `/home/me/runs/x` compare equal."""
    raw = yaml.safe_load(recipe_text) or {}
    for key in ("output_dir", "cache_dir"):
        if raw.get(key):
            raw[key] = str(Path(raw[key]).expanduser().resolve())
    data = raw.get("data") or {}
    if data.get("dir"):
        data["dir"] = str(Path(data["dir"]).expanduser().resolve())
    return raw


def _by_place(hashes: dict[str, str]) -> dict[str, str]:
    """Data hashes keyed by absolute path (hub sources as they are), however the data folder was spelled."""
    return {name if name.startswith("hub:") else str(Path(name).expanduser().resolve()): digest
            for name, digest in hashes.items()}


def _check_resumable(run_dir: Path, recipe_text: str, file_hashes: dict[str, str]) -> None:
    if not is_run_dir(run_dir):
        if (run_dir / RECIPE_FILE).is_file():
            raise BequestError(f"{run_dir} has no bequest marker ({MARKER}): it was not started by this bequest, "
                               "so it cannot be resumed; start a new run with --output-dir")
        raise BequestError(f"nothing to resume in {run_dir}: run without --resume to start it")
    if _normalised(_marker(run_dir).get("recipe", "")) != _normalised(recipe_text):
        raise BequestError(f"the recipe differs from the one {run_dir} was started with ({run_dir / RECIPE_FILE}): "
                           "resume with the same recipe and overrides, or start a new run with --output-dir")
    started = json.loads((run_dir / ENVIRONMENT_FILE).read_text()).get("data_files", {}) \
        if (run_dir / ENVIRONMENT_FILE).is_file() else {}
    for stage in sorted((run_dir / "checkpoints").glob("*/stage-*")):  # what the resumed run will load, checked now
        latest = latest_checkpoint(stage)
        if latest is not None:
            check_checkpoint(latest)
    started, now = _by_place(started), _by_place(file_hashes)
    changed = sorted(name for name in set(started) | set(now) if started.get(name) != now.get(name))
    if changed:
        raise BequestError(f"the data changed since {run_dir} was started ({changed[0]}"
                           f"{f' and {len(changed) - 1} more' if len(changed) > 1 else ''}): restore it to resume, "
                           "or start a new run with --output-dir")


def leftovers(run_dir: Path, recipe_text: str, students: list[str], file_hashes: dict[str, str], resume: bool,
              overwrite: bool) -> list[Path]:
    """What starting (or resuming) the run must delete first; a BequestError if it may not start."""
    run_dir = Path(run_dir)
    doomed = _leftovers(run_dir, recipe_text, file_hashes, resume, overwrite)
    for name in students:  # a student's export would replace a folder of the user's that bears its name
        folder = run_dir / name
        if folder.exists() and folder not in doomed and not (folder / EXPORT_RECORD).is_file():
            raise BequestError(f"{folder} exists and was not written by bequest: move it out of {run_dir}, "
                               "or rename the student")
    return doomed


def _leftovers(run_dir: Path, recipe_text: str, file_hashes: dict[str, str], resume: bool, overwrite: bool) -> list[Path]:
    if resume and overwrite:
        raise BequestError("--resume and --overwrite contradict each other: choose one")
    if run_dir.exists() and not run_dir.is_dir():
        raise BequestError(f"output directory {run_dir} is a file: choose a folder with --output-dir")
    if resume:
        _check_resumable(run_dir, recipe_text, file_hashes)
        return sorted(run_dir.glob(".*.tmp"))  # half-written exports of the killed process
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise BequestError(f"run directory {run_dir} already exists: pass --resume to continue it, "
                               "--overwrite to replace it, or --output-dir to write elsewhere")
        if not is_run_dir(run_dir):
            raise BequestError(f"{run_dir} is not a bequest run directory (no {MARKER}): refusing to delete anything "
                               "in it, choose another --output-dir")
        return bequest_entries(run_dir)
    return []


def remove_paths(paths: list[Path]) -> None:
    for path in paths:
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def prepare_run_dir(run_dir: Path, recipe: str, students: list[str], file_hashes: dict[str, str], resume: bool,
                    overwrite: bool, accelerator) -> None:
    """Refuse to touch an existing directory unless asked, and never delete what bequest did not write.

    Every process checks (the same files, so the same answer, and every process exits on a refusal);
    only the main process deletes, once all have looked, and marks a new run directory as bequest's."""
    doomed = leftovers(run_dir, recipe, students, file_hashes, resume, overwrite)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        remove_paths(doomed)
        if not resume:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_marker(run_dir, recipe, students)
    accelerator.wait_for_everyone()
