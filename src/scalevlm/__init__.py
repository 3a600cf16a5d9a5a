"""scalevlm: the library behind the SCALe reasoning-VLM pipeline (pure core in `scalevlm.core`)."""

from scalevlm.env import set_offline_env

set_offline_env()  # first, before anything imports transformers/datasets/huggingface_hub (see scalevlm.env)

__version__ = "0.1.0"
