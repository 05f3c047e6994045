"""
recbole_derrd.pipeline.report
#############################
What a run returns (:class:`RunResult`) and the final table a distiller's run ends with: its
test metrics and inference parameters side by side with its teacher's and, with
``compare_student_alone``, with those of the same student trained alone
(:mod:`recbole_derrd.pipeline.student_alone`). The table is written in one place,
:func:`log_final_table`.
"""

import collections.abc
import dataclasses
from logging import getLogger

from recbole.utils import set_color

from recbole_derrd.pipeline.student_alone import format_change, relative_change
from recbole_derrd.pipeline.training import parameter_count


def comparison_table(rows, columns):
    """A plain-text table: ``rows`` is a list of (label, values...)."""
    table = [columns] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def student_teacher_comparison(model, student_result, teacher_result, alone=None, teacher_valid=None):
    """Test metrics and inference parameter counts of a distilled student and its teacher and,
    given ``alone`` (a :class:`~recbole_derrd.pipeline.student_alone.StudentAloneComparison`), of the
    same student trained alone, with the best validation score of both students and, given
    ``teacher_valid`` (:class:`~recbole_derrd.pipeline.teacher_quality.TeacherValidation`), the
    teacher's."""
    student_params = parameter_count(model)
    teacher_params = parameter_count(model.teacher.model)
    columns = ["", f"teacher ({model.teacher.name})",
               f"distilled student ({type(model).__name__}: {type(model.student).__name__})"]
    if alone is not None:
        columns.append(f"student alone ({alone.model_name})")
    columns.append("distilled/teacher")
    if alone is not None:
        columns.append("distilled vs alone")

    def row(label, teacher, student, student_alone, cell):
        """A table row; ``teacher`` None: not measured."""
        cells = [label, "-" if teacher is None else cell(teacher), cell(student)]
        if alone is not None:
            cells.append(cell(student_alone))
        cells.append(f"{student / teacher:.3f}" if teacher else "-")
        if alone is not None:
            cells.append(format_change(relative_change(student, student_alone)))
        return cells

    def count(value):
        return f"{value:,}"

    def metric(value):
        return f"{value:.4f}"

    rows = [row("parameters", teacher_params, student_params,
                None if alone is None else alone.parameters, count)]
    for name, value in student_result.items():
        alone_value = None if alone is None else alone.test_result[name]
        rows.append(row(name, teacher_result[name], value, alone_value, metric))
    teacher_score = None if teacher_valid is None else teacher_valid.teacher_score
    if alone is not None:
        rows.append(row(f"valid {alone.valid_metric} (best)", teacher_score, alone.distilled_valid_score,
                        alone.alone_valid_score, metric))
    elif teacher_valid is not None:
        rows.append(row(f"valid {teacher_valid.valid_metric} (best)", teacher_score,
                        teacher_valid.student_score, None, metric))
    return comparison_table(rows, columns)


def log_final_table(model, test_result, teacher_result, alone=None, teacher_valid=None):
    """The run's final table (test set, same split) and the warnings that say what to try when
    the teacher is worse than the student on validation (``teacher_valid``), or distillation
    made the student worse than the student alone."""
    logger = getLogger()
    title = "student vs teacher" + (" and student alone" if alone is not None else "")
    table = student_teacher_comparison(model, test_result, teacher_result, alone, teacher_valid)
    if teacher_valid is not None:
        table += teacher_valid.table_note()
    logger.info(set_color(title, "yellow") + " (test set, same split):\n" + table)
    if teacher_valid is not None:
        teacher_valid.warn_if_worse()
    if alone is not None and alone.distilled_is_worse:
        logger.warning(alone.warning_message())


@dataclasses.dataclass
class DistillationResult:
    """What a distiller's run measures besides its student: the teacher and the student alone."""

    teacher_test_result: dict
    student_parameters: int
    teacher_parameters: int
    #: The teacher's file: the user's ``teacher_checkpoint``, or the on-demand teacher's cache.
    teacher_checkpoint: str
    #: The weights this run trained with (``auto`` ones as chosen), for its records.
    loss_weights: dict
    #: The same student trained alone (``compare_student_alone``; None when off, or skipped in
    #: a multi-process run).
    alone: object = None
    #: The teacher's validation score against the student's
    #: (:class:`~recbole_derrd.pipeline.teacher_quality.TeacherValidation`).
    teacher_valid: object = None

    def as_dict(self):
        alone = self.alone
        teacher_valid = {} if self.teacher_valid is None else self.teacher_valid.result_entries()
        return {
            **teacher_valid,
            "teacher_test_result": self.teacher_test_result,
            "student_parameters": self.student_parameters,
            "teacher_parameters": self.teacher_parameters,
            "teacher_checkpoint": self.teacher_checkpoint,
            "loss_weights": self.loss_weights,
            "student_alone_valid_result": None if alone is None else alone.valid_result,
            "student_alone_test_result": None if alone is None else alone.test_result,
            "student_alone_checkpoint": None if alone is None else alone.checkpoint,
            # the distilled student's best validation score is the worse
            "distilled_worse_than_alone": None if alone is None else alone.distilled_is_worse,
        }


@dataclasses.dataclass(eq=False)
class RunResult(collections.abc.Mapping):
    r"""What :func:`~recbole_derrd.quick_start.run_recbole_derrd` returns. Also a read-only
    mapping of its fields (``result["test_result"]``, ``result.get(...)``, :meth:`as_dict`),
    a distiller's :class:`DistillationResult` flattened into it."""

    best_valid_score: float
    valid_score_bigger: bool
    best_valid_result: dict
    test_result: dict
    #: Each top-k metric per test user, in the evaluation's order (:mod:`recbole_derrd.data.per_user`).
    test_per_user: dict
    #: Test Recall@k by item-popularity group with ``popularity_groups`` > 0, else None
    #: (:mod:`recbole_derrd.data.popularity`).
    test_popularity_result: dict
    train_loss: dict
    train_epoch_seconds: list
    train_epoch_diagnostics: list
    parameters: int
    #: A distiller's teacher and student-alone figures (None for a RecBole model).
    distillation: DistillationResult = None
    checkpoint: str = None
    #: None when the run adopted its weight search's chosen trial (or saves nothing).
    resume_file: str = None
    #: The report of the search of the loss weights set to ``auto``, or None
    #: (:mod:`recbole_derrd.pipeline.weight_search`).
    weight_search: dict = None

    def as_dict(self):
        """The result as the plain dictionary earlier versions returned."""
        fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        distillation = fields.pop("distillation")
        tail = {key: fields.pop(key) for key in ("checkpoint", "resume_file", "weight_search")}
        return {**fields, **(distillation.as_dict() if distillation is not None else {}), **tail}

    def __getitem__(self, key):
        return self.as_dict()[key]

    def __iter__(self):
        return iter(self.as_dict())

    def __len__(self):
        return len(self.as_dict())
