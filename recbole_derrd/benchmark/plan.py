"""
recbole_derrd.benchmark.plan
############################
What a table runs and reports, from its command's options and the cells it has: the settings
of each method at each seed (the plugin's defaults; with ``--tune`` every trial of its grid at
the first seed, the chosen trial at the others, plus what it takes from another method's
search), the choice of a search, the rows beside the search, and the cells a row of the
results table averages.

A choice is made only once the search's whole grid has finished: until then the methods that
depend on it raise RuntimeError (:mod:`.jobs` goes on with other cells meanwhile).
"""

import contextlib

from recbole_derrd.benchmark.methods import (
    AUTO_ROWS, DEFAULT_ROWS, DISTILLERS, LEARNER_KEYS, SHORT_TRIALS, TUNED_FROM, TUNING_GRIDS, cell_key,
    default_weights, is_automatic,
)


class Plan:
    """The settings and reported cells of one table (``args``: its command's options), read
    from ``store`` (:class:`~recbole_derrd.benchmark.cells.CellStore`)."""

    def __init__(self, args, store):
        self.args = args
        self.store = store

    @property
    def cells(self):
        return self.store.cells

    def settings(self, method, seed, size):
        """The settings ``method`` runs with at ``seed``: without --tune the plugin's defaults
        (its current default weights, explicit: default_weights); with --tune every trial of
        its grid at the first seed, its chosen trial at the others (plus what it takes from
        another method's search, TUNED_FROM)."""
        extra = self.args.method_settings.get(method, {})
        return [dict(setting, **extra) for setting in self.searched_settings(method, seed, size)]

    def searched_settings(self, method, seed, size):
        """:meth:`settings` before the method's --method_settings."""
        if not self.args.tune:
            return [default_weights(method, self.args.backbone)]
        inherited = {}
        for source, keys in TUNED_FROM.get(method, []):
            if source in self.args.methods:
                chosen = self.chosen_setting(source, size)
                inherited.update({key: chosen[key] for key in keys})
        if method not in TUNING_GRIDS:
            return [inherited]
        if seed == self.args.seed_values[0]:
            return [dict(inherited, **trial) for trial in TUNING_GRIDS[method]]
        return [self.chosen_setting(method, size)]

    def trials(self, method, size):
        """The finished trials of ``method`` at the first seed, in grid order."""
        first = self.args.seed_values[0]
        keys = [cell_key(method, size, first, setting) for setting in self.settings(method, first, size)]
        return [self.cells[key] for key in keys if key in self.cells]

    def chosen_setting(self, method, size):
        """The trial with the best validation score (``valid_metric`` of the protocol) at the
        first seed; ties go to the earlier trial of the grid. Only once every trial of the
        grid has finished: a choice among some of them would be reported (or run at the
        other seeds) as the tuned setting."""
        trials = self.trials(method, size)
        grid = self.settings(method, self.args.seed_values[0], size)
        if len(trials) < len(grid):
            raise RuntimeError(f"{method}'s search has finished {len(trials)} of its {len(grid)} "
                               f"trials at seed {self.args.seed_values[0]}: nothing to choose yet")
        sign = 1 if trials[0].get("valid_score_bigger", True) else -1
        return max(trials, key=lambda cell: sign * cell["valid_score"])["setting"]

    def method_cells(self, method, seed, size):
        """The cells (:meth:`~recbole_derrd.benchmark.jobs.Runner.run_missing_cell` arguments)
        of ``method`` at ``seed`` and ``size``, one per setting."""
        return [(method, size, seed, setting) for setting in self.settings(method, seed, size)]

    def beside_search_cells(self, seed):
        """The cells beside the search at ``seed``: at the first seed (with --tune or --auto_rows)
        DEFAULT_ROWS at the plugin's defaults and AUTO_ROWS with ``auto`` weights, and every
        seed's --other_weights (none of them with --search_only). With --tune the ``auto`` rows take the student alone's searched
        learner settings: a RuntimeError until that search has finished."""
        cells = []
        beside = (self.args.tune and not self.args.search_only) or self.args.auto_rows
        if beside and seed == self.args.seed_values[0]:
            for size in self.args.sizes:
                if self.args.tune and "student" in self.args.methods:
                    self.chosen_setting("student", size)  # raises until its search has finished
                cells += [(method, size, seed, setting,
                           f" (plugin defaults{', automatic weights' if is_automatic(setting) else ''})")
                          for method, setting in self.default_rows(size) if method in self.args.methods]
        return cells + [
            (method, size, seed, dict(weights, **self.args.method_settings.get(method, {})), " (other weights)")
            for size in self.args.sizes for method, weights in self.args.other_weights]

    def default_rows(self, size, short_trials=False):
        """(method, setting) of the rows beside the search: DEFAULT_ROWS at the plugin's (and
        RecBole's) defaults; AUTO_ROWS with ``auto`` weights and the student alone's chosen
        learner settings (what ``auto`` replaces is the weight search alone); with
        ``short_trials`` also AUTO_ROWS with SHORT_TRIALS (reported where they were run). A
        table without --tune: the table's own learner settings (its cells are the defaults)."""
        rows = [(method, default_weights(method, self.args.backbone)) for method in DEFAULT_ROWS]
        if not self.args.tune:
            learner = {}  # the table's own learner settings, those of its student alone
        else:
            try:
                learner = {key: self.chosen_setting("student", size)[key] for key in LEARNER_KEYS}
            except RuntimeError:  # the student's search has not run
                learner = None
        if learner is not None:
            rows += [(method, dict(learner, **weights)) for method, weights in AUTO_ROWS.items()]
            if short_trials:
                rows += [(method, dict(learner, **weights, **SHORT_TRIALS)) for method, weights in AUTO_ROWS.items()]
        return [(method, dict(setting, **self.args.method_settings.get(method, {}))) for method, setting in rows]

    def default_setting(self, method):
        """``method``'s cells at the plugin's defaults: its default weights and --method_settings."""
        return dict(default_weights(method, self.args.backbone), **self.args.method_settings.get(method, {}))

    def reported_cells(self, method, size):
        """The cells a row of the results table averages: one per seed, at the chosen setting
        (--tune) or the defaults."""
        setting = self.default_setting(method)
        if self.args.tune and method != "teacher":
            try:
                setting = (self.chosen_setting(method, size) if method in TUNING_GRIDS
                           else self.settings(method, self.args.seed_values[0], size)[0])
            except RuntimeError:  # its search (or the one it depends on) has not finished
                return []
        keys = [cell_key(method, size, seed, setting) for seed in self.args.seed_values]
        return [self.cells[key] for key in keys if key in self.cells]

    def searched_keys(self):
        """The cells a --tune table reports in its search section: its searches' trials and the
        rows beside them (defaults, ``auto``), at the first seed (none without --tune)."""
        if not self.args.tune:
            return set()
        first, keys = self.args.seed_values[0], set()
        for size in self.args.sizes:
            for method in DISTILLERS:
                with contextlib.suppress(RuntimeError):  # a search it depends on has not finished
                    keys.update(cell_key(method, size, first, setting)
                                for setting in self.settings(method, first, size))
            keys.update(cell_key(method, size, first, setting)
                        for method, setting in self.default_rows(size, short_trials=True))
        return keys
