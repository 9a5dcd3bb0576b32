"""The networks of the paper. Importing this package registers all of them, explicitly below,
in the order ``cclnn models`` lists them."""
# noqa-comments: these imports register the networks; their order is the listing order
from . import network_cclnn, network_nlsn, network_edsr, network_rcan  # noqa: F401,I001
from . import network_rnan, network_srcnn, network_a2n, network_divanet  # noqa: F401,I001
from .descriptor import ModelInfo, describe
from .nlsa import NonLocalSparseAttention
from .registry import build_model, count_parameters, list_models, model_config

__all__ = ["ModelInfo", "NonLocalSparseAttention", "build_model", "count_parameters", "describe",
           "list_models", "model_config"]
