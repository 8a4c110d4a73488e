"""Task kinds, one module each; importing the package registers them."""

# isort: skip_file
from bequest.kinds.base import TASK_KINDS, TaskData, TaskKind, baseline, evaluate, load_task_data  # noqa: F401
from bequest.kinds.classification import CLASSIFICATION, REGRESSION  # noqa: F401
from bequest.kinds.extractive_qa import EXTRACTIVE_QA  # noqa: F401
from bequest.kinds.token_classification import TOKEN_CLASSIFICATION  # noqa: F401
from bequest.kinds.multi_label import MULTI_LABEL  # noqa: F401
from bequest.kinds.sentence_embedding import SENTENCE_EMBEDDING  # noqa: F401
