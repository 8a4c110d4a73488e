"""Student initialisers, one module each. Importing the package registers them all, in this order:
the order a student's initialisers apply in (layer selection, or a pretrained model, or ETD's
extraction builds the student; WID and SPS change it)."""

# isort: skip_file
from bequest.init import layers  # noqa: F401
from bequest.init import pretrained  # noqa: F401
from bequest.init import etd  # noqa: F401
from bequest.init import wid  # noqa: F401
from bequest.init import sps  # noqa: F401
