"""`bequest list`: every name a recipe may use, with what it does, read from the registries."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def catalog() -> dict[str, list[tuple[str, str]]]:
    """Section title -> (name, description) rows."""
    import bequest.builtins  # noqa: F401  (registers every built-in entry)
    from bequest.data.tasks import GENERIC_TASKS, QA_TASKS, TASKS
    from bequest.registry import Registry

    rows = {"tasks": [(spec.name, "your own files (data.train, data.text_column, data.label_column); classes from the labels"
                       if spec.from_data else f"{spec.kind_name}; scored by {', '.join(spec.metrics)}")
                      for spec in [*GENERIC_TASKS.values(), *TASKS.values(), *QA_TASKS.values()]]}
    rows.update({title: [(entry.name, entry.description) for entry in registry] for title, registry in Registry.all.items()})
    return rows


def print_catalog() -> None:
    console = Console()
    for title, rows in catalog().items():
        table = Table(title=title, title_justify="left", show_header=False)
        table.add_column("name", style="bold")
        table.add_column("description")
        for name, description in rows:
            table.add_row(name, description)
        console.print(table)
