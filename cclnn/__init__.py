"""cclnn: CCLNN and the networks of its paper, with MATLAB-exact evaluation and training.

Networks take N x 3 x h x w float RGB in [0, 255] and return N x 3 x (s h) x (s w).
"""
from .factory import create_model
from .models import NonLocalSparseAttention, build_model, list_models
from .resize import imresize
from .upscaling import upscale
from .weights import load_weights, save_weights

__version__ = "0.1.0"
__all__ = ["NonLocalSparseAttention", "build_model", "create_model", "imresize", "list_models",
           "load_weights", "save_weights", "upscale"]
