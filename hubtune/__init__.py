"""hubtune: pretrained Hugging Face model -> fine-tuned, verified, published, servable model.

Importing this package is cheap: no torch, transformers or datasets at import time.
"""

__version__ = "0.1.0"
