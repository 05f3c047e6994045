"""
recbole_derrd.data.atomic_files
###############################
Checks of RecBole's atomic files (``<dataset>.inter``, ``.user``, ``.item``) before RecBole
reads them.

RecBole reads these files with pandas and trusts their header: an empty file, a header alone,
a missing or misspelt header, a word in a ``float`` column or bytes that are not valid in the
configured ``encoding`` end in RecBole's internal errors (a ``KeyError`` deep in the dataset,
a pandas parser error) or, worse, in a run on silently wrong data. Here each file RecBole will
load is read once, line by line, and the first problem is reported with the file, the line and
the header RecBole expects.
"""

import os

from recbole_derrd.errors import UserError

#: Column types of RecBole's atomic files.
FIELD_TYPES = ("token", "token_seq", "float", "float_seq")


class DatasetFileError(UserError, ValueError):
    """An atomic file of the dataset cannot be read as RecBole expects."""


def _loaded_files(config):
    """``(path, required field names, loaded field names or None for all)`` of the atomic
    files RecBole will load."""
    name, folder = config["dataset"], config["data_path"]
    load_col = config["load_col"]
    uid, iid = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    suffixes = config["benchmark_filename"]
    inter_files = [f"{name}.inter"] if not suffixes else [f"{name}.{suffix}.inter" for suffix in suffixes]
    candidates = [(file, "inter", [uid, iid]) for file in inter_files]
    candidates += [(f"{name}.user", "user", [uid]), (f"{name}.item", "item", [iid])]
    for file, suffix, required in candidates:
        path = os.path.join(folder, file)
        if suffix != "inter" and not os.path.isfile(path):
            continue  # optional files
        loaded = None
        if isinstance(load_col, dict):
            if suffix not in load_col:
                continue  # RecBole does not load this file
            required = list(dict.fromkeys(required + list(load_col[suffix] or [])))
            loaded = set(required)
        yield path, required, loaded


def _expected_header(required, separator):
    types = {"timestamp": "float", "rating": "float", "label": "float"}
    return separator.join(f"{field}:{types.get(field, 'token')}" for field in required)


#: Files already checked in this process, by (path, size, modification time).
_checked = set()


def check_atomic_files(config):
    """Check every atomic file RecBole will load for ``config``.

    Raises:
        DatasetFileError: naming the file, the line, and the header RecBole expects.
    """
    for path, required, loaded in _loaded_files(config):
        stat = os.stat(path)
        key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns, tuple(required))
        if key in _checked:
            continue
        check_atomic_file(
            path,
            required,
            loaded=loaded,
            field_separator=config["field_separator"] or "\t",
            seq_separator=config["seq_separator"] or " ",
            encoding=config["encoding"] or "utf-8",
        )
        _checked.add(key)


def check_atomic_file(
    path, required, loaded=None, field_separator="\t", seq_separator=" ", encoding="utf-8"
):
    """Check one atomic file: a header of ``name:type`` columns that holds ``required``, at
    least one data line, the header's number of values on every line, numbers in the loaded
    (``loaded``; None: all) ``float`` / ``float_seq`` columns, ids in the required token
    columns, and text that decodes with ``encoding``.

    Raises:
        DatasetFileError
    """
    expected = _expected_header(required, field_separator)
    shown_separator = "a tab" if field_separator == "\t" else repr(field_separator)
    hint = (
        f"RecBole expects a header line of 'name:type' columns separated by {shown_separator} "
        f"(types {', '.join(FIELD_TYPES)}), e.g. {expected!r}"
    )

    def fail(line_number, problem):
        where = f"{path}, line {line_number}" if line_number else path
        raise DatasetFileError(f"Dataset file {where}: {problem}. {hint}.")

    with open(path, "rb") as handle:
        columns = None
        numeric, identifiers = {}, {}
        data_lines = 0
        for line_number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as error:
                fail(line_number, f"bytes that are not valid {encoding} ({error.reason} at byte "
                                  f"{error.start} of the line); set `encoding` or fix the file")
            line = line.rstrip("\r\n")
            if columns is None:
                if not line.strip():
                    fail(line_number, "the header line is empty")
                columns = line.split(field_separator)
                names = []
                for index, column in enumerate(columns):
                    field, _, field_type = column.partition(":")
                    if not field or field_type not in FIELD_TYPES:
                        fail(line_number, f"header column {column!r} is not 'name:type' (is the "
                                          "header missing, or the separator another?)")
                    names.append(field)
                    if field_type in ("float", "float_seq") and (loaded is None or field in loaded):
                        numeric[index] = (column, field_type == "float_seq")
                    if field in required:
                        identifiers[index] = column
                missing = [field for field in required if field not in names]
                if missing:
                    fail(line_number, f"the header has no column {', '.join(missing)} (it has "
                                      f"{', '.join(columns)})")
                identifiers = {
                    index: column for index, column in identifiers.items()
                    if column.split(":")[1].startswith("token")
                }
                continue
            if not line.strip():
                continue  # pandas skips blank lines
            values = line.split(field_separator)
            if len(values) != len(columns):
                fail(line_number, f"{len(values)} values, the header has {len(columns)} columns")
            for index, (column, sequence) in numeric.items():
                value = values[index].strip()
                parts = value.split(seq_separator) if sequence else [value]
                for part in parts:
                    if part == "":
                        continue  # a missing value: RecBole fills it
                    try:
                        float(part)
                    except ValueError:
                        fail(line_number, f"{value!r} in column {column!r} is not a number")
            for index, column in identifiers.items():
                if not values[index].strip():
                    fail(line_number, f"column {column!r} is empty")
            data_lines += 1
    if columns is None:
        fail(0, "the file is empty")
    if data_lines == 0:
        fail(0, "the file has a header but no data lines")
