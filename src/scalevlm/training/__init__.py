"""TRL glue: data conversion, segment labels of batches, the SCALe trainer, config translation, one SFT run.

Submodules are imported directly (`scalevlm.training.trainer`, ...) so that importing the package stays cheap.
"""
