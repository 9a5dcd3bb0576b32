import os
from pathlib import Path

import pytest
import torch

SHARED = Path(os.environ.get("CCLNN_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep the LR cache of the tests out of the user's ~/.cache."""
    os.environ["CCLNN_CACHE"] = str(tmp_path_factory.mktemp("cache"))
