"""An example plugin, outside bequest/: an ETD importance scorer that keeps the units of *least* weight
magnitude (a deliberately bad choice, so a test can tell it was used). docs/extending.md shows it."""

from bequest.init.importance import SCORERS, Scores, magnitude_scores


def least_magnitude_scores(model, **_) -> Scores:
    scores = magnitude_scores(model)
    return Scores(-scores.hidden, [-h for h in scores.heads], [-f for f in scores.ffn])


if "least_magnitude" not in SCORERS:
    SCORERS.register("least_magnitude", least_magnitude_scores, description="keeps the smallest weights (an example plugin)")
