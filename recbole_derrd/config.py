"""
recbole_derrd.config
####################
The plugin's configurator: RecBole's :class:`recbole.config.Config` with

- model names resolved plugin-first (``DERRD``, ...), then among RecBole's built-ins;
- this plugin's YAML defaults (``recbole_derrd/properties``, package data) layered over
  RecBole's, and, for a distiller, the student backbone's own RecBole defaults beneath them
  (the layering rules: :mod:`recbole_derrd.settings.defaults`);
- ``parse_command_line=False`` for configurations built inside a run (the teacher's), so the
  student's ``--key=value`` overrides cannot leak into them (RecBole's Config parses
  ``sys.argv`` every time); the launcher's own flags (``--resume``, ``--nproc``...) are never
  read as configuration keys;
- multi-process runs over ``gloo`` on the CPU besides RecBole's NCCL on GPUs (``dist_backend``);
- the training keys, the model's own keys and an on-demand teacher's settings validated once,
  when the configuration is built (:func:`recbole_derrd.settings.validation.check_config`);
- what the user gives read without a traceback or a silent misreading: the command line, the
  configuration files and RecBole's own errors on them (:mod:`recbole_derrd.settings.
  user_input`), and keys neither RecBole nor the plugin knows refused
  (:mod:`recbole_derrd.settings.known_keys`).
"""

import ast
import sys

from recbole.config import Config as RecBoleConfig

from recbole_derrd.settings.defaults import config_layers, plugin_properties_file  # noqa: F401 (API)
from recbole_derrd.pipeline.distributed import BACKENDS, DistributedSettingsError, join_cpu_process_group
from recbole_derrd.data.eval_candidates import check_fixed_eval_candidates
from recbole_derrd.settings.keys import data_path_root, rebuilt_parameters  # noqa: F401 (API)
from recbole_derrd.utils import get_model
from recbole_derrd.settings.user_input import check_command_line, read_by_recbole, read_config_files
from recbole_derrd.settings.validation import check_config

#: Flags of ``run_scripts/run.py`` that are arguments of :func:`recbole_derrd.run`, not keys:
#: ``run`` passes the multi-process ones to every process itself, as RecBole's ``run`` does.
LAUNCHER_FLAGS = ("resume", "nproc", "world_size", "ip", "port", "group_offset")


class Config(RecBoleConfig):
    r"""RecBole's Config, plugin-aware.

    Args:
        model (str or class): a plugin model name (``DERRD``), a RecBole model name, or a class.
        dataset (str): dataset name.
        config_file_list (list of str): YAML files.
        config_dict (dict): parameters.
        parse_command_line (bool): read ``--key=value`` from ``sys.argv`` (as RecBole does).
            Configurations built inside a run pass False.
    """

    def __init__(
        self,
        model=None,
        dataset=None,
        config_file_list=None,
        config_dict=None,
        parse_command_line=True,
    ):
        self.parse_command_line = parse_command_line
        #: ``{path: mapping}`` of the configuration files, read (and checked) before RecBole
        #: reads them: a missing file, a YAML error or a Python tag is one message.
        self.config_file_contents = read_config_files(config_file_list)
        with read_by_recbole("the configuration (command line, config files, config_dict)"):
            super().__init__(model, dataset, config_file_list, config_dict)
        check_fixed_eval_candidates(self)
        check_config(self)

    def _convert_config_dict(self, config_dict):
        """String values to Python values with ``ast.literal_eval``, not RecBole's ``eval``: a
        configuration read back from a checkpoint (or given by code) must never run code.
        ``"1e-3"``, ``"[0.8,0.1,0.1]"``, ``"{'epochs': 2}"``, ``"None"`` convert as before;
        ``true`` / ``false`` in any case are booleans; anything else stays a string."""
        for key, value in config_dict.items():
            if not isinstance(value, str):
                continue
            if value.lower() in ("true", "false"):
                config_dict[key] = value.lower() == "true"
                continue
            try:
                config_dict[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                pass
        return config_dict

    def _load_cmd_line(self):
        if not self.parse_command_line:
            return dict()
        check_command_line(sys.argv)  # what RecBole would ignore, or fail on
        command_line = super()._load_cmd_line()
        for flag in LAUNCHER_FLAGS:
            command_line.pop(flag, None)
        return command_line

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
        if isinstance(model, str):
            model = get_model(model)
        return super()._get_model_and_dataset(model, dataset)

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        for yaml_file in self._plugin_yaml_files(model, model_class):
            self._update_internal_config_dict(yaml_file)

    def _plugin_yaml_files(self, model, model_class):
        """The plugin's YAML layers for ``model``, lowest priority first
        (:func:`recbole_derrd.settings.defaults.config_layers`)."""
        return config_layers(model, self.external_config_dict, self.yaml_loader)

    def _set_default_parameters(self):
        super()._set_default_parameters()
        # A distiller trains with its student backbone's input type (pairwise for BPR,
        # pointwise for NeuMF); RecBole reads it from the class, so the class resolves it.
        resolve = getattr(self.model_class, "resolve_input_type", None)
        if resolve is not None:
            self.final_config_dict["MODEL_INPUT_TYPE"] = resolve(self.final_config_dict)

    def _init_device(self):
        """RecBole's device set-up; a process of a multi-process run with ``dist_backend: gloo``
        joins its process group over gloo and runs on the CPU (RecBole hard-wires NCCL)."""
        settings = self.final_config_dict
        backend = settings["dist_backend"]
        if backend not in BACKENDS:
            raise DistributedSettingsError(
                f"dist_backend must be one of {', '.join(BACKENDS)}, got {backend!r}"
            )
        if "local_rank" not in settings or backend == "nccl":
            return super()._init_device()
        local_rank = settings.pop("local_rank")
        super()._init_device()  # the single-process set-up: gpu_id, CUDA_VISIBLE_DEVICES
        settings["local_rank"] = local_rank
        join_cpu_process_group(settings)


def config_from_plain(plain, dataset=None, overrides=None):
    """Rebuild a :class:`Config` from the plain final configuration stored in a checkpoint.

    Args:
        plain (dict): a checkpoint's ``config``.
        dataset (str): dataset name (default: the stored one).
        overrides (dict): values that replace the stored ones (device, paths...).
    """
    return Config(
        model=plain["model"],
        dataset=dataset or plain["dataset"],
        config_dict=rebuilt_parameters(plain, overrides),
        parse_command_line=False,
    )
