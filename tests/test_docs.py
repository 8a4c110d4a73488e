"""The documentation says what the code does: the recipe reference is generated, the README's recipe is the file."""

from pathlib import Path

from bequest.reference import recipe_reference

ROOT = Path(__file__).resolve().parents[1]


def test_the_recipe_reference_is_current():
    assert (ROOT / "docs" / "recipe.md").read_text() == recipe_reference(), (
        "docs/recipe.md is stale: python -m bequest.reference > docs/recipe.md")


def test_the_readme_shows_the_quickstart_recipe_as_it_is():
    recipe = (ROOT / "recipes" / "quickstart.yaml").read_text()
    body = recipe[recipe.index("name: quickstart"):]
    assert f"```yaml\n{body}```" in (ROOT / "README.md").read_text()


def test_the_reference_gives_the_defaults_a_partial_section_gets():
    """The defaults of a section written in part are those of one left out (student lr 1e-4, teacher 2 epochs)."""
    text = recipe_reference()
    assert "| `students.N.train.learning_rate` | float | `0.0001` |" in text
    assert "| `teacher.finetune.epochs` | int | `2` |" in text
    assert "| `data.max_length` | int | `128` |" in text
