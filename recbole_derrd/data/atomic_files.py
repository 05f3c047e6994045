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

The rule: a file that passes is read by RecBole exactly as a person reads it, line by line,
the values split at the separator (a missing ``float`` value aside, which RecBole fills).
So what pandas would read otherwise is refused too: a value that starts with a double quote
(pandas takes it as a quoted field, drops the quotes and joins lines up to the next quote), a
carriage return inside a line (a line break to pandas), a value pandas reads as missing
(``NA``, ``null``, ``None``...), ``nan`` or ``inf`` in a ``float`` column, a byte-order mark
(read as part of the first column's name), a NUL character (NumPy drops it from the end of an
id), a value longer than pandas' field limit, a second header line (files joined with their
headers) and a header that names a column twice.
"""

import codecs
import csv
import math
import os
import re

from pandas._libs.parsers import STR_NA_VALUES

from recbole_derrd.errors import UserError

#: Column types of RecBole's atomic files.
FIELD_TYPES = ("token", "token_seq", "float", "float_seq")

#: Longest value RecBole's reader accepts (pandas' Python engine reads with :mod:`csv`).
FIELD_SIZE_LIMIT = csv.field_size_limit()


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


#: What pandas reads as a missing value (its default ``na_values``; RecBole keeps them on).
MISSING_VALUES = frozenset(STR_NA_VALUES)

#: A number as people write it (and as pandas and Python read it alike): ASCII digits, a
#: point, an exponent; surrounding spaces allowed.
NUMBER = re.compile(r" *[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)? *", re.ASCII)

#: Characters with a special meaning in a regular expression (a separator of several characters
#: is one, to pandas).
REGEX_SPECIAL = set(".^$*+?{}[]\\|()")

#: Byte-order marks, by the encodings that write them.
BYTE_ORDER_MARKS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE,
                    codecs.BOM_UTF32_BE)


def check_atomic_file(
    path, required, loaded=None, field_separator="\t", seq_separator=" ", encoding="utf-8"
):
    """Check one atomic file: a header of distinct ``name:type`` columns that holds
    ``required``, at least one data line, the header's number of values on every line, finite
    numbers in the loaded (``loaded``; None: all) ``float`` / ``float_seq`` columns, ids in the
    required token columns, text that decodes with ``encoding``, and nothing pandas would read
    otherwise than a person does (see the module's docstring).

    Raises:
        DatasetFileError
    """
    file = AtomicFileReader(path, required, loaded, field_separator, seq_separator)
    if len(field_separator) > 1 and set(field_separator) & REGEX_SPECIAL:
        file.fail(0, f"field_separator {field_separator!r} has several characters, so pandas reads "
                     "it as a regular expression, in which "
                     f"{' '.join(sorted(set(field_separator) & REGEX_SPECIAL))} are special; use one "
                     "character (a tab), or characters without a special meaning")
    with open(path, "rb") as handle:
        if handle.read(4).startswith(BYTE_ORDER_MARKS) and not _reads_byte_order_mark(encoding):
            file.fail(1, "the file starts with a byte-order mark (BOM), which RecBole reads as part "
                         "of the first column's name; save the file without it, or set "
                         "`encoding: utf-8-sig`")
        handle.seek(0)
        for line_number, line in _text_lines(handle, encoding, file.fail):
            file.read_line(line_number, line)
    file.finish()


def _reads_byte_order_mark(encoding):
    """Whether ``encoding`` reads a byte-order mark as one (not as text)."""
    return codecs.lookup(encoding).name in ("utf-8-sig", "utf-16", "utf-32")


def _text_lines(handle, encoding, fail):
    """``(line number, line)`` of a binary file decoded with ``encoding``, lines split at
    ``\n`` (as pandas splits them; a carriage return stays in the line)."""
    def undecodable(where, error):
        return (f"bytes that are not valid {encoding} ({error.reason} at byte {error.start} of "
                f"the {where}); set `encoding` or fix the file")

    if codecs.lookup(encoding).name.startswith(("utf-16", "utf-32")):  # "\n" is several bytes
        try:
            text = handle.read().decode(encoding)
        except UnicodeDecodeError as error:
            fail(0, undecodable("file", error))
        lines = text.split("\n")
        for index, line in enumerate(lines[:-1]):
            yield index + 1, line + "\n"
        if lines[-1]:
            yield len(lines), lines[-1]
        return
    for line_number, raw in enumerate(handle, start=1):
        try:
            yield line_number, raw.decode(encoding)
        except UnicodeDecodeError as error:
            fail(line_number, undecodable("line", error))


def _is_float(text):
    """Whether Python reads ``text`` as a float (``nan``, ``inf``, ``1_000``... included)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


class AtomicFileReader:
    """Reads an atomic file's decoded lines one by one, as RecBole will read them, and fails
    with the file, the line and the header RecBole expects at the first problem."""

    def __init__(self, path, required, loaded, field_separator, seq_separator):
        self.path, self.required, self.loaded = path, required, loaded
        self.separator, self.seq_separator = field_separator, seq_separator
        shown_separator = "a tab" if field_separator == "\t" else repr(field_separator)
        self.hint = (
            f"RecBole expects a header line of 'name:type' columns separated by {shown_separator} "
            f"(types {', '.join(FIELD_TYPES)}), e.g. {_expected_header(required, field_separator)!r}"
        )
        self.header = self.columns = None
        self.numeric, self.identifiers, self.tokens = {}, {}, {}
        self.data_lines = 0

    def fail(self, line_number, problem):
        where = f"{self.path}, line {line_number}" if line_number else self.path
        raise DatasetFileError(f"Dataset file {where}: {problem}. {self.hint}.")

    def read_line(self, line_number, line):
        line = line[:-1] if line.endswith("\n") else line
        line = line[:-1] if line.endswith("\r") else line
        if "\r" in line:
            self.fail(line_number, "a carriage return inside the line, where RecBole's reader "
                                   "(pandas) starts a new line; remove it")
        if "\0" in line:
            self.fail(line_number, "a NUL character, which RecBole's id mapping (NumPy) drops at "
                                   "the end of a value; remove it")
        if self.columns is None:
            self.read_header(line_number, line)
        elif self.separator in line or line.strip():  # pandas skips blank lines alone
            self.read_values(line_number, line, line.split(self.separator))

    def read_header(self, line_number, line):
        if not line.strip():
            self.fail(line_number, "the header line is empty")
        self.header, self.columns = line, line.split(self.separator)
        names = []
        for index, column in enumerate(self.columns):
            field, _, field_type = column.partition(":")
            if not field or field_type not in FIELD_TYPES:
                self.fail(line_number, f"header column {column!r} is not 'name:type' (is the "
                                       "header missing, or the separator another?)")
            if field in names:
                self.fail(line_number, f"the header names column {field!r} twice")
            names.append(field)
            if self.loaded is not None and field not in self.loaded:
                continue  # RecBole does not read it
            if field_type.startswith("float"):
                self.numeric[index] = (column, field_type == "float_seq")
            else:
                self.tokens[index] = column
                if field in self.required:
                    self.identifiers[index] = column
        missing = [field for field in self.required if field not in names]
        if missing:
            self.fail(line_number, f"the header has no column {', '.join(missing)} (it has "
                                   f"{', '.join(self.columns)})")

    def read_values(self, line_number, line, values):
        if line == self.header:
            self.fail(line_number, "a second header line (were files joined with their "
                                   "headers?); remove it")
        if len(values) != len(self.columns):
            self.fail(line_number, f"{len(values)} values, the header has {len(self.columns)} "
                                   "columns")
        # per value only where the whole line could hold the problem (most lines cannot)
        suspects = values if '"' in line or len(line) > FIELD_SIZE_LIMIT else ()
        for value in suspects:
            if value.startswith('"'):
                self.fail(line_number, f"value {value[:40]!r} starts with a double quote, which "
                                       "RecBole's reader (pandas) takes as a quoted field (it "
                                       "drops the quotes, or joins the next lines into this "
                                       "one); remove the quotes")
            if len(value) > FIELD_SIZE_LIMIT:
                self.fail(line_number, f"a value of {len(value):,} characters, longer than "
                                       f"RecBole's reader (pandas) accepts ({FIELD_SIZE_LIMIT:,})")
        for index, column in self.tokens.items():
            if values[index] in MISSING_VALUES and values[index]:
                self.fail(line_number, f"{values[index]!r} in column {column!r} is read by "
                                       "RecBole (pandas) as a missing value, not as "
                                       f"{values[index]!r}; rename it")
        for index, (column, sequence) in self.numeric.items():
            self.check_numbers(line_number, values[index], column, sequence)
        for index, column in self.identifiers.items():
            if not values[index].strip():
                self.fail(line_number, f"column {column!r} is empty")
        self.data_lines += 1

    def check_numbers(self, line_number, value, column, sequence):
        parts = value.split(self.seq_separator) if sequence else [value]
        for part in parts:
            if part == "":
                continue  # a missing value: RecBole fills it
            written_as_number = NUMBER.fullmatch(part) is not None
            if written_as_number and math.isfinite(float(part)):
                continue
            if (written_as_number or _is_float(part)) and not math.isfinite(float(part)):
                self.fail(line_number, f"{value!r} in column {column!r} is not a finite number "
                                       "(leave the value empty where it is missing)")
            self.fail(line_number, f"{value!r} in column {column!r} is not a number")

    def finish(self):
        if self.columns is None:
            self.fail(0, "the file is empty")
        if self.data_lines == 0:
            self.fail(0, "the file has a header but no data lines")
