"""Objectives, one module per family. Importing the package registers them all, in this order: the
order a stage's loss sums its terms in (and its learned parts' parameter order)."""

# isort: skip_file
from bequest.objectives import logit  # noqa: F401  (task, kd)
from bequest.objectives import hidden  # noqa: F401
from bequest.objectives import attention  # noqa: F401  (attention_mse, attention_kl, value_relation, minilmv2)
from bequest.objectives import pkd  # noqa: F401
from bequest.objectives import mlm  # noqa: F401
from bequest.objectives import ptp  # noqa: F401
from bequest.objectives import embedding  # noqa: F401  (embedding_mse, embedding_cosine, embedding_similarity)
