"""The command-line scripts (``python run_scripts/<name>.py``), importable as modules too
(``run_scripts.benchmark``...), e.g. by the tests."""
