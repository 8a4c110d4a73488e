"""bequest: compress BERT-family encoders by distillation with weights inherited from the teacher."""

__version__ = "0.1.0"
