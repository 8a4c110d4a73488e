"""The table `bequest run` prints at the end: every model's score, size and speed (from results.json)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_table(results: dict) -> None:
    main = results["main_metric"]
    if results["task"]:
        score_name, score = f"dev {main}", lambda row: f"{row['dev'][main]:.4f}"
        title = f"{results['task']}: teacher vs students (dev {main}"
    else:
        score_name, score = "held-out loss", lambda row: f"{row[main]:.4f}" if main in row else "-"
        title = "task-agnostic distillation (held-out distillation loss"
    table = Table(title=f"{title}; latency per batch of {results['latency']['batch_size']} on {results['latency']['device']})")
    tested = "test" in results["teacher"]  # data.test: scored once at the end, beside the dev score
    columns = ["model", "layers", score_name, *([f"test {main}"] if tested else []), "parameters", "latency ms", "speed-up"]
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, row in [("teacher", results["teacher"])] + list(results["students"].items()):
        test = [f"{row['test'][main]:.4f}"] if tested else []
        table.add_row(name, str(row["num_layers"]), score(row), *test, f"{row['parameters'] / 1e6:.1f}M",
                      f"{row['latency_ms']:.1f}", f"{row['speedup']:.2f}x")
    for name, row in results.get("baselines", {}).items():  # what knowing only the training labels scores
        test = [f"{row['test'][main]:.4f}"] if tested else []
        table.add_row(f"({name})", "-", score(row), *test, "-", "-", "-")
    Console().print(table)
    if "deploy" in results:
        print_deployment(results["deploy"], main)


WIDE = 120  # characters the deployment table needs


def deployment_rows(deploy: dict, main: str) -> tuple[list[str], list[list[str]]]:
    """The deployment table (every model in every format): its columns and rows, as text."""
    sizes = deploy["batch_sizes"]
    tested = any("test" in row for row in deploy["rows"])
    columns = ["model", "format", f"dev {main}", *([f"test {main}"] if tested else []), "MB",
               *(f"ms b{size}" for size in sizes), *(f"x b{size}" for size in sizes), "max diff"]
    rows = []
    for row in deploy["rows"]:
        test = [f"{row['test'][main]:.4f}" if "test" in row else "-"] if tested else []
        rows.append([row["model"], row["format"], f"{row['dev'][main]:.4f}", *test, f"{row['size_mb']:.1f}",
                     *(f"{row['latency_ms'][str(s)]['p50']:.1f}/{row['latency_ms'][str(s)]['p90']:.1f}" for s in sizes),
                     *(f"{row['speedup'][str(s)]:.2f}x" for s in sizes), f"{row['max_abs_diff']:.1e}"])
    return columns, rows


def deployment_caption(deploy: dict) -> str:
    return (f"ms bN: p50/p90 milliseconds of a pass over N real dev examples on the CPU, {deploy['threads']} thread(s), "
            f"{deploy['repeats']} passes after warm-up; x bN: speed-up over the {deploy['baseline']} row at p50; max diff: "
            "largest absolute difference from the model's own PyTorch outputs on the timed batch")


def print_deployment(deploy: dict, main: str) -> None:
    columns, rows = deployment_rows(deploy, main)
    table = Table(title="deployment: every model in every format", caption=deployment_caption(deploy))
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "format") else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    console = Console()
    Console(width=max(console.width, WIDE)).print(table)  # cut to a narrow terminal, its numbers would be lost
