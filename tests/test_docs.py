"""The documentation: its generated parts match their sources (recbole_derrd/benchmark/docs.py,
run_scripts/make_docs.py), the README stays a front door, and every link leads to a file (and
heading) of the repository."""

import re
import shutil
from pathlib import Path

import pytest

from recbole_derrd.benchmark import docs
from run_scripts import make_docs

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
#: Written on other branches at the same time as this one: a link to them is accepted while they
#: are missing here (delete this set once they are merged).
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?(?:e[+-]?\d+)?%?")


def test_generated_parts_match_their_sources():
    assert docs.update(REPO, check=True) == [], "run: python run_scripts/make_docs.py"


def test_readme_is_a_front_door():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, len(lines)


def test_each_number_of_the_readme_headline_is_in_the_summary():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    summary = (REPO / "results" / "summary.md").read_text(encoding="utf-8")
    headline = docs.marked_part(readme, "headline", "README.md")
    numbers = NUMBER.findall(headline.replace("@10", "").replace("@20", ""))
    assert len(numbers) > 100  # the tables are there, not only their headings
    assert [number for number in numbers if number not in summary] == []
    assert "| ml-100k (recbole) | 3/3 | ndcg@10 |" in headline


def repository_copy(tmp_path):
    """The generator's inputs and outputs, copied under ``tmp_path``."""
    for name in ("README.md", "docs/configuration.md", "results/summary.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / docs.PROPERTIES, tmp_path / docs.PROPERTIES)
    return tmp_path


def test_a_changed_yaml_comment_shows_up_in_the_key_table(tmp_path, capsys):
    repo = repository_copy(tmp_path)
    path = repo / docs.PROPERTIES / "model" / "DERRD.yaml"
    text = path.read_text(encoding="utf-8")
    assert "# (int) M, experts per bank" in text
    path.write_text(text.replace("# (int) M, experts per bank", "# (int) M, experts in each bank, renamed"),
                    encoding="utf-8")
    with pytest.raises(SystemExit) as stopped:
        make_docs.main(["--check", f"--repo={repo}"])
    assert stopped.value.code == 1
    assert "docs/configuration.md" in capsys.readouterr().out
    make_docs.main([f"--repo={repo}"])  # rewrites the table
    table = (repo / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert "| `de_num_experts` | int | `30` | M, experts in each bank, renamed (one bank per student" in table
    make_docs.main(["--check", f"--repo={repo}"])  # now up to date: no exit
    assert docs.marked_part(table, "keys", "copy").count("| `de_num_experts` |") == 1


def test_the_key_table_reads_overrides_blocks_and_continued_comments(tmp_path):
    properties = repository_copy(tmp_path) / docs.PROPERTIES
    table = docs.key_table(properties)
    # a per-backbone default, with the file it comes from
    assert "| `lambda_de` | float | `0.01`; `student_model: NeuMF`: `0.0001` (`model/DERRD/NeuMF.yaml`) |" in table
    # a block value, and a comment continued on the lines below its key
    assert "| `lambda_de: [0, 0.001, 0.01, 0.1]; lambda_rrd: [0, 0.001, 0.01, 0.1]` |" in table
    assert "Must be below `1/de_num_experts`. `0` = the exact dense computation. |" in table
    # a key only a per-backbone file sets
    assert "| `mlp_hidden_size` | list | -; `student_model: NeuMF`: `[20, 10]` (`distiller/NeuMF.yaml`) |" in table


def test_a_key_without_comment_stops_the_generator(tmp_path):
    properties = repository_copy(tmp_path) / docs.PROPERTIES
    path = properties / "model" / "CD.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "cd_new_key: 3\n", encoding="utf-8")
    with pytest.raises(docs.DocsError, match="cd_new_key"):
        docs.key_table(properties)


def test_a_document_without_its_markers_is_refused(tmp_path):
    repo = repository_copy(tmp_path)
    readme = repo / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8").replace(docs.marker("headline", end=True), ""),
                      encoding="utf-8")
    with pytest.raises(docs.DocsError, match="README.md has no"):
        docs.update(repo, check=True)


def slug(heading):
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def outside_code(text):
    """The lines of a Markdown text outside fenced code blocks."""
    inside = False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif not inside:
            yield line


def anchors(path):
    found = set()
    for line in outside_code(path.read_text(encoding="utf-8")):
        if line.startswith("#"):
            base = slug(line.lstrip("#"))
            anchor, count = base, 1
            while anchor in found:  # GitHub numbers repeated headings
                anchor, count = f"{base}-{count}", count + 1
            found.add(anchor)
    return found


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.relative_to(REPO).as_posix())
def test_links_lead_to_files_and_headings_of_the_repository(document):
    text = document.read_text(encoding="utf-8")
    assert "shared/" not in text and "/work/" not in text
    broken = []
    for line in outside_code(text):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            name, _, anchor = target.partition("#")
            path = (document.parent / name).resolve() if name else document
            if REPO not in path.parents and path != REPO:
                broken.append(f"{target}: outside the repository")
                continue
            relative = path.relative_to(REPO).as_posix()
            if not path.exists():
                broken.append(f"{target}: no such file")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{target}: no such heading in {relative}")
    assert broken == []
