"""Data sources for curation: embedded generators, local JSONL files and Hugging Face datasets."""
