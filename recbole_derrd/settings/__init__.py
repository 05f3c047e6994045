"""Configuration: the plugin's models, defaults and key checking.

What lives here: the registered distillers and backbone adapters and the lists derived from
their classes (model names, loss weights, shape keys), RecBole's models as fallback
(``registry``); where the YAML defaults live and how they layer (``defaults``, read by
:class:`recbole_derrd.config.Config`), which keys decide a split, a teacher or a model
(``keys``), the one check of every key's value before any work (``validation``, with
``recbole_values`` for RecBole's own keys), the keys RecBole or the plugin knows
(``known_keys``), and the reading of what the user gives (command line, configuration files,
RecBole's errors on them: ``user_input``; ``run_hyper.py``'s search space: ``search_space``). The defaults themselves are the YAML files of
:mod:`recbole_derrd.properties`.

May import: :mod:`recbole_derrd.errors`, :mod:`recbole_derrd.data` and
:mod:`recbole_derrd.teacher` (the checks of data needs and of an on-demand teacher's settings).
"""
