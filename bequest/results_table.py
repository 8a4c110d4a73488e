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
    Console().print(table)
