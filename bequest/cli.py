"""The `bequest` command. User errors print one line and exit 2; they never show a traceback."""

from __future__ import annotations

import functools
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from bequest.errors import BequestError

app = typer.Typer(
    help="Distil BERT-family encoders into small students that inherit their teacher's weights.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


class Terminated(BaseException):
    """SIGTERM, turned into an exception so a run stops the way Ctrl-C stops it (and, like Ctrl-C's,
    one that `except Exception` does not swallow)."""


def _terminate(signum, frame):
    raise Terminated


def user_errors(command):
    """Turn BequestError (and a write refused for space or permission) into one line on stderr and exit
    code 2; Ctrl-C and SIGTERM into a line saying how to resume."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from bequest.io import as_os_error, write_failure

        signal.signal(signal.SIGTERM, _terminate)
        try:
            return command(*args, **kwargs)
        except BequestError as error:
            print(f"error: {error}", file=sys.stderr)
            raise typer.Exit(2) from None
        except Exception as error:  # a write refused for want of space or permission, wherever it happened
            cause = as_os_error(error)
            failure = write_failure(cause, Path(cause.filename or ".")) if cause is not None else None
            if failure is None:
                raise
            print(f"error: {failure}", file=sys.stderr)
            raise typer.Exit(2) from None
        except (KeyboardInterrupt, Terminated) as stop:
            name = "terminated" if isinstance(stop, Terminated) else "interrupted"
            print(f"{name}: run the same command with --resume to continue", file=sys.stderr)
            raise typer.Exit(143 if isinstance(stop, Terminated) else 130) from None

    return wrapper


def _recipe(path: Path, assignments: list[str] | None, options: dict[str, str | None]):
    """The validated recipe with `--set` overrides, then the command's own options (when given).
    A bad recipe fails here, before torch is even imported."""
    from bequest.config import load_config
    from bequest.recipe_files import parse_assignment

    overrides = [parse_assignment(assignment) for assignment in assignments or []]
    overrides += [(key, value) for key, value in options.items() if value is not None]
    return load_config(path, overrides)


@app.command()
@user_errors
def run(
    recipe: Annotated[Path, typer.Argument(help="YAML recipe, e.g. recipes/quickstart.yaml")],
    data_dir: Annotated[str | None, typer.Option(help="local glue_data folder, or SQuAD JSON folder (default: the recipe's data.dir, else the hub)")] = None,
    output_dir: Annotated[str | None, typer.Option(help="run directory (default: the recipe's output_dir, else runs/<name>)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a recipe key: --set students.0.train.epochs=1")] = None,
    resume: Annotated[bool, typer.Option(help="continue a killed run from its last checkpoint")] = False,
    overwrite: Annotated[bool, typer.Option(help="delete an existing run directory and start again")] = False,
    push_to_hub: Annotated[str | None, typer.Option(help="upload the student to this hub repo (user-or-org/name; "
                                                         "several students: REPO_ID-<name>)")] = None,
    private: Annotated[bool, typer.Option(help="with --push-to-hub: create the repo private")] = False,
) -> None:
    """Run a recipe: fine-tune the teacher if needed, distil the students, evaluate, export."""
    config = _recipe(recipe, set_, {"data.dir": data_dir, "output_dir": output_dir})
    from bequest.hub import check_repo_id, push_students
    from bequest.pipeline import run_recipe

    if push_to_hub:
        check_repo_id(push_to_hub)
    results = run_recipe(config, resume=resume, overwrite=overwrite)
    if push_to_hub and results:  # only the main process has results (under DDP)
        for name, url in push_students(config.run_dir, list(results["students"]), push_to_hub, private).items():
            print(f"{name}: pushed to {url}")


@app.command(name="list")
@user_errors
def list_() -> None:
    """Every task, objective, initialiser, scorer, task kind and architecture a recipe may name."""
    from bequest.catalog import print_catalog

    print_catalog()


@app.command()
@user_errors
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="an exported model folder")],
    task: Annotated[str | None, typer.Option(help="GLUE task (e.g. sst2), squad or squad_v2, or a task on your own files "
                                                  "(default: the one the model was trained on)")] = None,
    data_dir: Annotated[str | None, typer.Option(help="local glue_data folder, or SQuAD JSON folder (default: the hub)")] = None,
    split: Annotated[str, typer.Option(help="validation, or test (data.test of a task on your own files)")] = "validation",
    recipe: Annotated[Path | None, typer.Option(help="a task on your own files: score on this recipe's data (default: "
                                                     "the data recorded at export)")] = None,
    max_length: Annotated[int | None, typer.Option(min=8, help="default: the value the model was trained with, else 128")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="default: the value the model was scored with, else 32")] = None,
    output: Annotated[Path | None, typer.Option(help="where to write the scores (default: MODEL_DIR/eval_<task>.json)")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing scores file")] = False,
) -> None:
    """Score an exported model on a task's dev set(s), or on the validation or test split of your own data."""
    from bequest.commands.evaluate import evaluate_folder

    if split not in ("validation", "test"):
        raise BequestError(f"--split {split}: use validation or test")
    config = _recipe(recipe, None, {}) if recipe is not None else None
    evaluate_folder(model_dir, task, data_dir, max_length, batch_size, output, overwrite, split, config)


@app.command()
@user_errors
def export(
    model_dir: Annotated[Path, typer.Argument(help="an exported model folder (of bequest run)")],
    format_: Annotated[list[str], typer.Option("--format", help="onnx, onnx-int8 or torch-int8 (repeat for more); each is "
                                                                "written to MODEL_DIR/<format>")],
    data_dir: Annotated[str | None, typer.Option(help="local glue_data folder, or SQuAD JSON folder (default: the hub)")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads while timing (default: all cores)")] = None,
    repeats: Annotated[int, typer.Option(min=1, help="timed passes per model and batch size")] = 20,
    batch_size: Annotated[int, typer.Option(min=1, help="the larger batch timed (batch 1 is timed too)")] = 32,
    overwrite: Annotated[bool, typer.Option(help="replace artifacts already written")] = False,
    push_to_hub: Annotated[str | None, typer.Option(help="then upload the folder to this hub repo (user-or-org/name)")] = None,
    private: Annotated[bool, typer.Option(help="with --push-to-hub: create the repo private")] = False,
) -> None:
    """Write a model in deployment formats (ONNX, int8), score each on the folder's data and time it."""
    from bequest.commands.export import export_formats
    from bequest.hub import check_repo_id, push_folder

    if push_to_hub:
        check_repo_id(push_to_hub)
    export_formats(model_dir, format_, data_dir, overwrite, threads, repeats, batch_size)
    if push_to_hub:
        print(f"pushed to {push_folder(model_dir, push_to_hub, private)}")


@app.command()
@user_errors
def predict(
    model_dir: Annotated[Path, typer.Argument(help="an exported model folder (of bequest run)")],
    input_: Annotated[Path, typer.Option("--input", help="a text file (a text a line) or a csv/tsv/jsonl/json/parquet table")],
    output: Annotated[Path | None, typer.Option(help="the JSON-lines file to write (default: standard output)")] = None,
    format_: Annotated[str, typer.Option("--format", help="pytorch, or an artifact written by export: onnx, onnx-int8, "
                                                          "torch-int8")] = "pytorch",
    columns: Annotated[list[str] | None, typer.Option("--column", help="the input's column for each text the model reads, "
                                                                       "in order (default: text[, text_pair]; question, context)")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="texts per batch")] = 32,
    max_length: Annotated[int | None, typer.Option(min=8, help="default: the value the model was trained with")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads (default: all cores)")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing output file")] = False,
) -> None:
    """Run an exported model (any format written) on new texts: labels and scores, entities, answers or embeddings."""
    from bequest.commands.predict import predict_file

    predict_file(model_dir, input_, output, format_, batch_size, max_length, threads, columns, overwrite)


@app.command()
@user_errors
def extract(
    recipe: Annotated[Path, typer.Argument(help="a recipe whose student has an extract section")],
    output: Annotated[Path, typer.Option(help="the folder to write the extracted student to")],
    student: Annotated[str | None, typer.Option(help="which student (default: the first with extract)")] = None,
    data_dir: Annotated[str | None, typer.Option(help="local glue_data folder, or SQuAD JSON folder (default: the recipe's data.dir, else the hub)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a recipe key: --set students.0.extract.hidden_size=192")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing output folder")] = False,
) -> None:
    """Cut a student out of the teacher in depth and width (ETD) and save it, without distilling it."""
    config = _recipe(recipe, set_, {"data.dir": data_dir})
    from bequest.commands.extract import extract_recipe_student

    extract_recipe_student(config, student, output, overwrite)


@app.command()
@user_errors
def merge(
    run_dir: Annotated[Path, typer.Argument(help="the run directory of a WID student that has not finished")],
    output: Annotated[Path, typer.Option(help="the folder to write the merged student to")],
    student: Annotated[str | None, typer.Option(help="which student (default: the first with wid)")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing output folder")] = False,
) -> None:
    """Merge a WID student's latest checkpoint (compactors and masks) into a dense model folder."""
    from bequest.commands.merge import merge_wid_checkpoint

    merge_wid_checkpoint(run_dir, student, output, overwrite)


@app.command()
@user_errors
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="YAML with recipe, grid (recipe key -> values) and output_dir")],
    data_dir: Annotated[str | None, typer.Option(help="local data folder for every run (default: the recipe's data.dir, else the hub)")] = None,
) -> None:
    """Run a recipe over a grid of overrides (skipping finished runs, resuming interrupted ones), then report."""
    from bequest.sweep import run_sweep

    run_sweep(sweep_file, [("data.dir", data_dir)] if data_dir else [])


@app.command()
@user_errors
def report(
    runs: Annotated[list[Path], typer.Argument(help="run directories, or folders that hold them (searched recursively)")],
    output: Annotated[Path, typer.Option(help="the folder to write report.{md,csv,html}, pareto.png and curves.png to")],
    overwrite: Annotated[bool, typer.Option(help="replace report files already in the output folder")] = False,
) -> None:
    """Compare finished runs: mean and sd over seeds, score retained, size, speed; tables and plots."""
    from bequest.report import write_report

    table = write_report(runs, output, overwrite)
    print(f"{len(table)} models from the runs compared: {Path(output) / 'report.md'}")


def main() -> None:
    """The `bequest` executable: as `app()`, but a command-line usage error (unknown option, a value out of
    range, a missing argument) is one line too."""
    from typer._click.exceptions import NoArgsIsHelpError, UsageError

    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as help_:
        help_.show()
        code = 2
    except UsageError as error:
        where = error.ctx.command_path if error.ctx else "bequest"
        print(f"error: {error.format_message()} (see {where} --help)", file=sys.stderr)
        code = 2
    sys.exit(code or 0)
