"""scalevlm: the library behind the SCALe reasoning-VLM pipeline (pure core in `scalevlm.core`)."""

__version__ = "0.1.0"
