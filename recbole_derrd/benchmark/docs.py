"""
recbole_derrd.benchmark.docs
############################
The generated parts of the documentation, written from what they document so they cannot drift:

- ``docs/configuration.md``, part ``keys``: the table of the plugin's keys, from the YAML
  defaults (``recbole_derrd/properties/**/*.yaml``). A key's documentation is its comment in
  the YAML: the comment after the key, ``key: value  # (type) text``, continued on the indented
  comment lines right below it. The defaults are the YAML's own text; the per-backbone files
  (``distiller/<backbone>.yaml``, ``model/<Model>/<backbone>.yaml``) appear as overrides of the
  file they layer over.
- ``README.md``, part ``headline``: the headline results, the ``headline`` part of
  ``results/summary.md`` (which ``run_scripts/summarize.py`` writes from the committed benchmark
  cells), its headings one level down.

A part lies between ``<!-- name:start -->`` and ``<!-- name:end -->`` in its file;
``run_scripts/make_docs.py`` rewrites the parts (``--check``: names the files that differ).
PyYAML drops comments, so the YAML files' comments are read by the small line parser below.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from recbole_derrd.errors import UserError

#: Where the plugin's YAML defaults live, relative to the repository.
PROPERTIES = Path("recbole_derrd") / "properties"
#: The committed benchmark summary the README's headline comes from.
SUMMARY = Path("results") / "summary.md"
#: The distiller listed first; the other models follow by name.
FIRST_MODEL = "DERRD"

#: ``key: value  # comment`` at the top level of a YAML file.
KEY_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):(.*)$")
#: A YAML comment starts at a ``#`` that begins the line or follows whitespace.
COMMENT = re.compile(r"(?:^|\s)#\s?")
#: The ``(type)`` a key's comment starts with.
TYPE_TAG = re.compile(r"^\((?P<type>[^)]*)\)\s*")


class DocsError(UserError):
    """A documentation file or a YAML default the generator cannot read as expected."""


@dataclass
class KeyDoc:
    """One top-level key of a YAML file: its default as the file writes it, and its comment."""
    key: str
    value: str
    comment: str


def split_comment(line):
    """(the YAML text of ``line``, its comment or None). No value of these files is a quoted
    string holding `` #``."""
    match = COMMENT.search(line)
    if match is None:
        return line.rstrip(), None
    return line[:match.start()].rstrip(), line[match.end():].strip()


def key_docs(path):
    """[KeyDoc, ...] of the top-level keys of the YAML file ``path``, in the file's order.

    A key's comment is the comment on its line plus the indented comment lines right below it
    (before a blank line, a comment at column 0 or the next key); a key whose value is a block
    (indented lines) gets those lines, joined by ``; ``, as its value.
    """
    docs, current, block = [], None, []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        text, comment = split_comment(line)
        match = KEY_LINE.match(line)
        if match:
            value, comment = split_comment(match.group(2))
            current, block = KeyDoc(match.group(1), value.strip(), comment or ""), []
            docs.append(current)
        elif current is not None and line[:1].isspace() and line.strip():
            if text.strip():  # a line of the key's block value
                block.append(text.strip())
                current.value = "; ".join(block)
            if comment:
                current.comment = f"{current.comment} {comment}".strip()
        else:  # a blank line or a comment at column 0 ends the key
            current = None
    loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if [doc.key for doc in docs] != list(loaded):
        raise DocsError(f"{path}: the comment parser read keys {[doc.key for doc in docs]}, YAML has "
                        f"{list(loaded)}: write one top-level `key: value  # comment` per line")
    return docs


def model_order(name):
    return (name != FIRST_MODEL, name)


def layer_sections(properties):
    """[(base file, [(override file, backbone), ...]), ...], file names relative to
    ``properties`` (posix): ``overall.yaml``, ``distiller.yaml`` (overridden by
    ``distiller/<backbone>.yaml``), then each ``model/<Model>.yaml`` (overridden by
    ``model/<Model>/<backbone>.yaml``), DERRD first."""
    properties = Path(properties)
    files = sorted(path.relative_to(properties).as_posix() for path in properties.rglob("*.yaml"))
    models = sorted((name[len("model/"):-len(".yaml")] for name in files
                     if re.fullmatch(r"model/[^/]+\.yaml", name)), key=model_order)
    bases = ["overall.yaml", "distiller.yaml"] + [f"model/{model}.yaml" for model in models]
    sections = []
    for base in bases:
        folder = base[:-len(".yaml")] + "/"
        overrides = [(name, name[len(folder):-len(".yaml")]) for name in files
                     if name.startswith(folder) and "/" not in name[len(folder):]]
        sections.append((base, overrides))
    placed = {name for base, overrides in sections for name in [base] + [o for o, _ in overrides]}
    if set(files) - placed:
        raise DocsError(f"{properties}: no place in the key table for {sorted(set(files) - placed)}")
    return [(base, overrides) for base, overrides in sections if (properties / base).is_file()]


def cell(text):
    """``text`` as one Markdown table cell."""
    return text.replace("|", "\\|")


def code(value):
    return f"`{value}`" if value else "-"


def section_rows(properties, base, overrides):
    """The table rows of one base file: its keys in order, then keys only its overrides set;
    each override's value (and its comment, if any) noted with its backbone."""
    docs = {doc.key: doc for doc in key_docs(Path(properties) / base)}
    notes = {}  # key: [(backbone, file, KeyDoc), ...]
    for name, backbone in overrides:
        for doc in key_docs(Path(properties) / name):
            notes.setdefault(doc.key, []).append((backbone, name, doc))
    rows = []
    for key in list(docs) + [key for key in notes if key not in docs]:
        own = docs.get(key)
        comments = ([own.comment] if own and own.comment else []) + [
            (f"With `student_model: {backbone}`: {doc.comment}" if own or index else doc.comment)
            for index, (backbone, _, doc) in enumerate(notes.get(key, [])) if doc.comment]
        if not comments:
            raise DocsError(f"{Path(properties) / base}: key `{key}` has no comment; its comment is "
                            "its documentation (`key: value  # (type) what it does`)")
        meaning = " ".join(comments)
        match = TYPE_TAG.match(meaning)
        kind, meaning = (match.group("type"), meaning[match.end():]) if match else ("", meaning)
        default = "; ".join([code(own.value) if own else "-"] + [
            f"`student_model: {backbone}`: {code(doc.value)} (`{name}`)" for backbone, name, doc in notes.get(key, [])])
        rows.append(f"| `{key}` | {cell(kind)} | {cell(default)} | {cell(meaning)} |")
    return rows


def first_sentence(path):
    """The first sentence of the comment block a YAML file starts with."""
    header = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("#").strip())
    text = " ".join(header)
    match = re.search(r"\.(\s|$)", text)
    return text[:match.start() + 1] if match else text


def key_table(properties):
    """The key table of ``docs/configuration.md``: one section per base file of the defaults."""
    lines = []
    for base, overrides in layer_sections(properties):
        lines += [f"### `{base}`", "", first_sentence(Path(properties) / base), "",
                  "| key | type | default | meaning |", "|---|---|---|---|"]
        lines += section_rows(properties, base, overrides) + [""]
    return "\n".join(lines).strip("\n")


def marker(name, end=False):
    return f"<!-- {name}:{'end' if end else 'start'} -->"


def marked_span(text, name, where):
    """(start, end) of what lies between ``name``'s markers in ``text``."""
    start, end = text.find(marker(name)), text.find(marker(name, end=True))
    if start < 0 or end < start:
        raise DocsError(f"{where} has no `{marker(name)}` ... `{marker(name, end=True)}` section")
    return start + len(marker(name)), end


def marked_part(text, name, where):
    start, end = marked_span(text, name, where)
    return text[start:end].strip("\n")


def replace_part(text, name, content, where):
    """``text`` with the part ``name`` replaced by ``content`` (one blank line inside each marker)."""
    start, end = marked_span(text, name, where)
    return f"{text[:start]}\n\n{content}\n\n{text[end:]}"


def headline(summary_text, where=SUMMARY):
    """The README's headline: the summary's ``headline`` part, its headings one level down and a
    paragraph repeated under every backbone's table kept once."""
    lines, seen = [], set()
    for paragraph in marked_part(summary_text, "headline", where).split("\n\n"):
        if not paragraph.startswith(("#", "|")):
            if paragraph in seen:
                continue
            seen.add(paragraph)
        lines.append("#" + paragraph if paragraph.startswith("#") else paragraph)
    return "\n\n".join(lines)


def generated_parts(repo):
    """{file relative to ``repo``: {part name: its content}}."""
    repo = Path(repo)
    return {
        "README.md": {"headline": headline((repo / SUMMARY).read_text(encoding="utf-8"))},
        "docs/configuration.md": {"keys": key_table(repo / PROPERTIES)},
    }


def update(repo, check=False):
    """Rewrite the generated parts under ``repo`` (``check``: leave the files as they are).

    Returns:
        the files (relative to ``repo``) whose generated parts differed.
    """
    repo, differing = Path(repo), []
    for name, parts in generated_parts(repo).items():
        path = repo / name
        text = original = path.read_text(encoding="utf-8")
        for part, content in parts.items():
            text = replace_part(text, part, content, name)
        if text != original:
            differing.append(name)
            if not check:
                path.write_text(text, encoding="utf-8")
    return differing
