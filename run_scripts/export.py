"""Export the student of a distiller's checkpoint as a plain RecBole model:

    python run_scripts/export.py saved/DERRD-<date>.pth [--output=saved/BPR-student.pth]

The written file has RecBole's checkpoint layout (``model``: the backbone, e.g. BPR) and loads
with ``torch.load(path)`` (weights only) where this plugin is not installed. An existing file
is never overwritten. The path written is printed. A user error is one ``error: ...`` line, exit
status 2 (``--debug``: with its traceback).
"""

import argparse
import sys

from recbole_derrd.cli import run_main
from recbole_derrd.files.export import export_student


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="checkpoint of a distiller (e.g. saved/DERRD-<date>.pth)")
    parser.add_argument("--output", "-o", default=None, help="file to write (default: beside it)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of user errors too")
    args = parser.parse_args()
    print(export_student(args.checkpoint, args.output,
                         warn=lambda message: print(message, file=sys.stderr)))


if __name__ == "__main__":
    run_main(main)
