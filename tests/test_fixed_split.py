"""Fixed splits in the LightGCN text format: the converter writes exactly the files' interactions
as RecBole atomic files, refuses bad input and existing output, and RecBole trains and evaluates
on exactly those three splits (no filtering, no re-split)."""

import gzip
import os

import pytest

import recbole_derrd.pipeline.training
from recbole_derrd import run_recbole_derrd
from recbole_derrd.data.fixed_split import (
    HEADER,
    LightGCNFormatError,
    convert_lightgcn,
    read_lightgcn_file,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTOCOL = os.path.join(REPO, "properties", "experiments", "protocol_fixed_split.yaml")

#: 7 users, items 0-24 (more than the protocol's top-20). User 4 has no validation line, user
#: 5 a validation line without items, user 6 only training items; blank lines and mixed
#: whitespace are allowed.
TRAIN = ("0 0 1 2 3\n1 2 3 4\n2 5 6 7 8 9\n\n3 0 9\t10\n4 1 4 7\n5 2 6 11 3\n"
         + "6 " + " ".join(str(item) for item in range(12, 25)) + "\n")
VALID = "0 4\n1 5 6\n2 10\n3 1\n5\n"
TEST = "0 5 6\n1 7\n2 0\n3 2 3\n4 8 0\n5 1\n"


def convert_main(argv):
    """``run_scripts/convert_lightgcn.py`` run with ``argv``: its exit status."""
    from run_scripts.convert_lightgcn import main

    return main(argv)


def pairs(text):
    result = []
    for line in text.splitlines():
        ids = line.split()
        result += [(ids[0], item) for item in ids[1:]]
    return result


def write_split(folder, train=TRAIN, valid=VALID, test=TEST):
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "train.txt.gz", "wt") as handle:  # gzipped and plain files mix
        handle.write(train)
    (folder / "valid.txt").write_text(valid)
    (folder / "test.txt").write_text(test)
    return str(folder)


def test_conversion_writes_exactly_the_interactions_of_each_split(tmp_path):
    source = write_split(tmp_path / "lightgcn")
    summary = convert_lightgcn(source, "tiny", str(tmp_path / "data"))

    for split, text in (("train", TRAIN), ("valid", VALID), ("test", TEST)):
        path = tmp_path / "data" / "tiny" / f"tiny.{split}.inter"
        assert summary["files"][split] == str(path)
        expected = HEADER + "".join(f"{user}\t{item}\n" for user, item in pairs(text))
        assert path.read_text() == expected
        assert summary[split] == len(pairs(text))
    assert (summary["train"], summary["valid"], summary["test"]) == (35, 5, 9)
    assert summary["users"] == 7 and summary["items"] == 25
    assert summary["pairs_in_several_splits"] == 0
    assert sorted(os.listdir(tmp_path / "data" / "tiny")) == [  # no temporary file left
        "tiny.test.inter", "tiny.train.inter", "tiny.valid.inter"]


def test_merged_conversion_writes_every_pair_once_in_file_order(tmp_path):
    # user 0's item 4 also in its test file: a pair in two splits is written once
    test = TEST.replace("0 5 6\n", "0 5 6 4\n")
    source = write_split(tmp_path / "lightgcn", test=test)
    assert convert_main([f"--input_dir={source}", "--name=tiny-all", f"--output_dir={tmp_path / 'data'}",
                         "--merged"]) == 0
    path = tmp_path / "data" / "tiny-all" / "tiny-all.inter"
    expected = pairs(TRAIN) + pairs(VALID) + pairs(TEST)  # ("0", "4") of the test file left out
    assert path.read_text() == HEADER + "".join(f"{user}\t{item}\n" for user, item in expected)
    assert os.listdir(tmp_path / "data" / "tiny-all") == ["tiny-all.inter"]
    # an existing merged file is kept unless overwrite
    assert convert_main([f"--input_dir={source}", "--name=tiny-all", f"--output_dir={tmp_path / 'data'}",
                         "--merged"]) == 2


def test_existing_files_are_kept_unless_overwrite(tmp_path, capsys):
    source = write_split(tmp_path / "lightgcn")
    output = str(tmp_path / "data")
    convert_lightgcn(source, "tiny", output)
    train_file = tmp_path / "data" / "tiny" / "tiny.train.inter"
    train_file.write_text("edited\n")

    with pytest.raises(FileExistsError, match="tiny.train.inter already exists"):
        convert_lightgcn(source, "tiny", output)
    assert train_file.read_text() == "edited\n"
    assert convert_main([f"--input_dir={source}", "--name=tiny", f"--output_dir={output}"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert train_file.read_text() == "edited\n"

    assert convert_main([f"--input_dir={source}", "--name=tiny", f"--output_dir={output}",
                         "--overwrite"]) == 0
    assert train_file.read_text().startswith(HEADER + "0\t0\n")


@pytest.mark.parametrize(
    "valid, message",
    [
        ("0 4\n1 five 6\n", r"valid.txt, line 2: 'five' is not an integer id"),
        ("0 4\n\n0 6\n", r"valid.txt, line 3: user 0 already has line 1"),
        ("0 4 7 4\n", r"valid.txt, line 1: item 4 appears more than once for user 0"),
        ("0 -4\n", r"valid.txt, line 1: negative id -4"),
    ],
)
def test_malformed_lines_are_named_by_file_and_line_and_nothing_is_written(tmp_path, valid,
                                                                          message):
    source = write_split(tmp_path / "lightgcn", valid=valid)
    with pytest.raises(LightGCNFormatError, match=message):
        convert_lightgcn(source, "tiny", str(tmp_path / "data"))
    assert not (tmp_path / "data").exists()


def test_missing_or_ambiguous_files_are_refused(tmp_path, capsys):
    source = write_split(tmp_path / "lightgcn")
    os.unlink(os.path.join(source, "valid.txt"))
    with pytest.raises(LightGCNFormatError, match=r"valid.txt\[.gz\] not found"):
        convert_lightgcn(source, "tiny", str(tmp_path / "data"))
    assert convert_main([f"--input_dir={source}", "--name=tiny",
                         f"--output_dir={tmp_path / 'data'}"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error:") and error.count("\n") == 1

    (tmp_path / "lightgcn" / "valid.txt").write_text(VALID)
    with gzip.open(tmp_path / "lightgcn" / "test.txt.gz", "wt") as handle:
        handle.write(TEST)
    with pytest.raises(LightGCNFormatError, match="both exist"):
        convert_lightgcn(source, "tiny", str(tmp_path / "data"))
    with pytest.raises(LightGCNFormatError, match="no such directory"):
        convert_lightgcn(str(tmp_path / "nowhere"), "tiny", str(tmp_path / "data"))


def test_a_corrupt_gzip_file_is_named(tmp_path):
    path = tmp_path / "train.txt.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(LightGCNFormatError, match="train.txt.gz: cannot be read"):
        read_lightgcn_file(str(path))


def test_recbole_trains_and_evaluates_on_exactly_the_converted_splits(tmp_path, workdir,
                                                                      monkeypatch):
    source = write_split(tmp_path / "lightgcn")
    convert_lightgcn(source, "tiny", str(tmp_path / "data"))
    prepared = []
    recbole_preparation = recbole_derrd.pipeline.training.data_preparation

    def recording_preparation(config, dataset):
        loaders = recbole_preparation(config, dataset)
        prepared.append((dataset, loaders))
        return loaders

    monkeypatch.setattr(recbole_derrd.pipeline.training, "data_preparation", recording_preparation)
    result = run_recbole_derrd(
        "BPR", "tiny", [PROTOCOL],
        {"data_path": str(tmp_path / "data"), "epochs": 1, "gpu_id": "", "state": "ERROR",
         "show_progress": False, "embedding_size": 4, "checkpoint_dir": str(workdir / "saved")},
    )
    (dataset, (train_data, valid_data, test_data)), = prepared
    # every interaction of every file, in its own split: nothing filtered, nothing re-split
    assert [len(loader.dataset) for loader in (train_data, valid_data, test_data)] == [35, 5, 9]
    assert dataset.user_num - 1 == 7 and dataset.item_num - 1 == 25  # ids without padding
    # user 4 (no validation line) and user 5 (an empty one) are not evaluated on validation
    validated = set(dataset.id2token(dataset.uid_field, valid_data.uid_list))
    assert validated == {"0", "1", "2", "3"}
    tested = set(dataset.id2token(dataset.uid_field, test_data.uid_list))
    assert tested == {"0", "1", "2", "3", "4", "5"}
    metrics = {f"{metric}@{k}" for metric in ("recall", "ndcg", "hit", "mrr") for k in (10, 20)}
    assert set(result["test_result"]) == metrics
