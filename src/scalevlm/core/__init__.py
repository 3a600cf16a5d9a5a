"""Pure, deterministic functions on plain data and tensors. No file I/O, no Prefect/DVC/TRL imports."""
