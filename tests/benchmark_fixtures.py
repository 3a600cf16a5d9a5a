"""Tiny copies of the paper's benchmarks in their published layouts (written here, nothing downloaded).

- `scienceqa_lmms_lab(folder)`: lmms-lab/ScienceQA as downloaded: README.md whose `configs:` name ScienceQA-FULL and
  ScienceQA-IMG, and `ScienceQA-IMG/test-00000-of-00001.parquet` written by `datasets` with an Image feature
  (`image`, `question`, `choices` list, `answer` int8 index, `hint`, `task`, `grade`, `subject`, `topic`, `category`,
  `skill`, `lecture`, `solution`).
- `scienceqa_derek_thomas(path)`: one parquet file of derek-thomas/ScienceQA's columns (the same), where text-only
  questions have no image (the image subset skips them).
- `iconqa_lmms_lab(folder)`: lmms-lab/ICON-QA: README.md with a `default` config and `data/val-00000-of-00001.parquet`
  (`question_id`, `question`, `choices` comma-joined, `answer` text, `query_image`, `choice_image_0`,
  `choice_image_1`, `ques_type`, `label`, `grade`, `skills`), one row per question type plus two unscorable rows.
"""

from __future__ import annotations

import io
from pathlib import Path

import datasets
from PIL import Image

RED, GREEN, BLUE = (200, 30, 30), (30, 200, 30), (30, 30, 200)
SQA_TEXT = ("question", "hint", "task", "grade", "subject", "topic", "category", "skill", "lecture", "solution")


def png(colour: tuple[int, int, int], size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def _image(colour: tuple[int, int, int] | None) -> dict[str, object] | None:
    return None if colour is None else {"bytes": png(colour), "path": None}


SCIENCEQA_ROWS = [  # (image colour, question, choices, answer index, hint, subject)
    (RED, "Which colour is the square?", ["red", "blue"], 0, "", "natural science"),
    (BLUE, "Which colour is the square?", ["red", "green", "blue"], 2, "The picture shows one square.",
     "natural science"),
    (GREEN, "Which word does not rhyme?", ["cat", "hat", "dog"], 2, "", "language science"),
]


def _scienceqa_dataset(rows: list[tuple]) -> datasets.Dataset:
    features = datasets.Features({
        "image": datasets.Image(), "question": datasets.Value("string"),
        "choices": datasets.Sequence(datasets.Value("string")),
        "answer": datasets.Value("int8"), **{c: datasets.Value("string") for c in SQA_TEXT if c != "question"},
    })
    data: dict[str, list] = {k: [] for k in features}
    for colour, question, choices, answer, hint, subject in rows:
        values = {"image": _image(colour), "question": question, "choices": choices, "answer": answer, "hint": hint,
                  "task": "closed choice", "grade": "grade2", "subject": subject, "topic": "colours",
                  "category": "Colours", "skill": "Identify colours", "lecture": "", "solution": ""}
        for k in data:
            data[k].append(values[k])
    return datasets.Dataset.from_dict(data, features=features)


def scienceqa_lmms_lab(folder: Path) -> Path:
    (folder / "ScienceQA-IMG").mkdir(parents=True)
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: ScienceQA-FULL\n  data_files:\n  - split: test\n"
        "    path: ScienceQA-FULL/test-*\n"
        "- config_name: ScienceQA-IMG\n  data_files:\n  - split: test\n    path: ScienceQA-IMG/test-*\n---\n"
        "# ScienceQA\n")
    _scienceqa_dataset(SCIENCEQA_ROWS).to_parquet(folder / "ScienceQA-IMG" / "test-00000-of-00001.parquet")
    (folder / "ScienceQA-FULL").mkdir()
    _scienceqa_dataset(SCIENCEQA_ROWS + [(None, "Which is a noun?", ["run", "tree"], 1, "", "language science")]) \
        .to_parquet(folder / "ScienceQA-FULL" / "test-00000-of-00001.parquet")
    return folder


def scienceqa_derek_thomas(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [(None, "Which is a noun?", ["run", "tree"], 1, "", "language science"), *SCIENCEQA_ROWS]
    _scienceqa_dataset(rows).to_parquet(path)
    return path


ICONQA_ROWS = [  # question_id, question, choices, answer, query, choice 0, choice 1, ques_type
    ("1001", "What has been done to this letter?", "turn,flip,slide", "flip", RED, None, None, "choose_txt"),
    ("1002", "Which picture shows the same shape?", "choice_0.png,choice_1.png", "choice_1.png", RED, GREEN, BLUE,
     "choose_img"),
    ("1003", "How many dots are there?", "", "7", BLUE, None, None, "fill_in_blank"),
    ("1004", "Which is heavier?", "feather,brick", "stone", GREEN, None, None, "choose_txt"),  # answer not a choice
    ("1005", "Which picture comes next?", "choice_0.png,choice_1.png,choice_2.png", "choice_2.png", RED, GREEN, BLUE,
     "choose_img"),  # lmms-lab keeps two choice images: choice 2 is not there
]


def iconqa_lmms_lab(folder: Path) -> Path:
    (folder / "data").mkdir(parents=True)
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: val\n    path: data/val-*\n---\n# ICON-QA\n")
    features = datasets.Features({
        "question_id": datasets.Value("string"), "question": datasets.Value("string"),
        "choices": datasets.Value("string"),
        "answer": datasets.Value("string"), "query_image": datasets.Image(), "choice_image_0": datasets.Image(),
        "choice_image_1": datasets.Image(), "ques_type": datasets.Value("string"), "label": datasets.Value("string"),
        "grade": datasets.Value("string"), "skills": datasets.Value("string"),
    })
    data: dict[str, list] = {k: [] for k in features}
    for qid, question, choices, answer, query, c0, c1, kind in ICONQA_ROWS:
        values = {"question_id": qid, "question": question, "choices": choices, "answer": answer,
                  "query_image": _image(query), "choice_image_0": _image(c0), "choice_image_1": _image(c1),
                  "ques_type": kind, "label": "", "grade": "kindergarten", "skills": "counting"}
        for k in data:
            data[k].append(values[k])
    datasets.Dataset.from_dict(data, features=features).to_parquet(folder / "data" / "val-00000-of-00001.parquet")
    return folder
