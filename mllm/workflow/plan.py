"""The experiment plan: which stages, runs and evaluations a config asks for, and their names.

A *stage* is a model the DAG evaluates: ``base`` (the world's starting model) or the output of a
training run — an SFT run (``sft:``), the grounding run (``grounding``) or one preference run per
loss × β. Run names map to their settings through the tables built here; nothing downstream
parses a name back into settings. Checks that span sections (a ``start`` that names no stage, an
on-policy preset that does not exist) fail here, before any job runs, naming the config key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mllm.workflow.world import BASE_MODEL, POPE_FILES, POPE_SETTINGS, WORLD_FILES, rec_file

GROUNDING_STAGE = "grounding"  # the grounding SFT run: a stage like any other
ON_POLICY_PAIRS = "results/preference/pairs.json"
# Keys of preference.on_policy the workflow reads itself (the decoding preset), not OnPolicySettings.
ON_POLICY_WORKFLOW_KEYS = ("strategy",)
# The demo world builds the own family's model (mllm.family.own.OwnFamily.name); named here, not
# imported, so that parsing the Snakefile does not import torch.
DEMO_FAMILY = "mllm"


class ConfigError(ValueError):
    """A config that passes the schema but asks for something inconsistent."""


def canonical(value: Any) -> Any:
    """``value`` with dict keys sorted at every level. Snakemake compares params by their repr,
    so reordering keys in the YAML must not rerun a job."""
    if isinstance(value, Mapping):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [canonical(item) for item in value]
    return value


def section(config: Mapping, *keys: str, default: Any = None) -> Any:
    """The config section at ``keys`` (canonical), or ``default`` where it is absent. Absent keys
    stay absent: the library's settings classes own every default."""
    value: Any = config
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            return default
        value = value[key]
    return canonical(value)


@dataclass(frozen=True)
class PreferenceRun:
    """One preference run: a named loss of ``preference.losses`` at one β."""

    name: str
    loss: str
    beta: float
    settings: dict  # mllm.preference.losses.PreferenceSettings fields given by the config


class Plan:
    """Everything the rules derive from a (schema-valid) config."""

    def __init__(self, config: Mapping):
        self.config = config
        self.sft_runs: dict[str, dict] = dict(config.get("sft") or {})
        self.preference = config.get("preference")
        self.grounding = config.get("grounding")
        self.strategies: list[str] = list(config["decoding"]["strategies"])
        self.preference_runs = self._preference_runs()
        extra = [GROUNDING_STAGE] if self.grounding else []
        extra += list(self.preference_runs)
        self.stages: list[str] = list(config["stages"]) + [
            run for run in extra if run not in config["stages"]
        ]
        self._check()

    # --- runs ---------------------------------------------------------------------------------

    def _preference_runs(self) -> dict[str, PreferenceRun]:
        if not self.preference:
            return {}
        shared = {
            key: self.preference[key]
            for key in ("use_average_logp", "on_bad_record")
            if key in self.preference
        }
        runs = {}
        for loss, spec in self.preference["losses"].items():
            for beta in self.preference["betas"]:
                name = f"{loss}_beta{beta}"
                settings = canonical({**shared, **spec, "beta": beta})  # a loss's own wins
                runs[name] = PreferenceRun(name, loss, beta, settings)
        return runs

    @property
    def preference_losses(self) -> dict[str, dict]:
        """Run name -> its loss as the config writes it, with its β (what the report shows)."""
        losses = self.preference["losses"] if self.preference else {}
        return {
            name: {**losses[run.loss], "beta": run.beta}
            for name, run in self.preference_runs.items()
        }

    @property
    def trained_stages(self) -> list[str]:
        """Stages made by a training run, in stage order."""
        trained = {*self.sft_runs, *self.preference_runs}
        if self.grounding:
            trained.add(GROUNDING_STAGE)
        return [stage for stage in self.stages if stage in trained]

    @property
    def trained_sft_runs(self) -> list[str]:
        """SFT runs the DAG trains: configured stages, the starts of the grounding and
        preference runs, and their own starts, transitively."""
        wanted = set(self.stages) | {
            part["start"] for part in (self.preference, self.grounding) if part
        }
        runs: set[str] = set()
        while wanted:
            run = wanted.pop()
            if run in self.sft_runs and run not in runs:
                runs.add(run)
                wanted.add(self.sft_runs[run]["start"])
        return sorted(runs)

    def start_of(self, run: str) -> str:
        """The stage a training run starts from."""
        if run in self.sft_runs:
            return self.sft_runs[run]["start"]
        if run == GROUNDING_STAGE and self.grounding:
            return self.grounding["start"]
        if run in self.preference_runs:
            return self.preference["start"]
        raise KeyError(f"{run!r} is not a training run of this config")

    @staticmethod
    def model_dir(stage: str) -> str:
        """A stage's model directory: the world's starting model, or a run's output."""
        return BASE_MODEL if stage == "base" else f"results/models/{stage}"

    # --- evaluations --------------------------------------------------------------------------

    def strategies_of(self, stage: str) -> list[str]:
        """Every strategy for the base model; trained stages only those the config lists."""
        if stage == "base":
            return self.strategies
        return list(self.config["decoding"].get("trained_stage_strategies", self.strategies))

    @property
    def decodings(self) -> list[tuple[str, str]]:
        """(stage, strategy) of every benchmark decoding, i.e. every CHAIR score."""
        return [(stage, s) for stage in self.stages for s in self.strategies_of(stage)]

    @property
    def yesno_stages(self) -> list[str]:
        return list(self.stages) if "yesno" in self.config else []

    @property
    def pope_stages(self) -> list[str]:
        """Stages POPE evaluates (every stage, when the config has a ``pope`` section)."""
        return list(self.stages) if "pope" in self.config else []

    @property
    def pope_evaluations(self) -> list[tuple[str, str]]:
        """(stage, setting) of every POPE result: every stage × every negative setting."""
        return [(stage, setting) for stage in self.pope_stages for setting in POPE_SETTINGS]

    @property
    def grounding_splits(self) -> list[tuple[str, str]]:
        """(dataset, split) of every split a grounding evaluation job (one per stage) scores."""
        if not self.grounding:
            return []
        return [
            (dataset, split)
            for dataset, splits in self.grounding["splits"].items()
            for split in splits
        ]

    @property
    def grounding_split_files(self) -> list[str]:
        """The REC file of each of ``grounding_splits``, in that order."""
        return [rec_file(self.rec_file_of(*split)) for split in self.grounding_splits]

    @property
    def grounding_evaluations(self) -> list[tuple[str, str, str]]:
        """(stage, dataset, split) of every grounding evaluation."""
        stages = self.grounding["eval_stages"] if self.grounding else []
        return [(stage, *split) for stage in stages for split in self.grounding_splits]

    @property
    def benchmark_files(self) -> dict[str, str]:
        """Key -> world file of every benchmark a score is computed on, for the report's
        integrity lines: ``chair``, ``yesno``, ``grounding/{dataset}/{split}``, ``pope/{setting}``."""
        files = {"chair": WORLD_FILES["benchmark"]}
        if self.yesno_stages:
            files["yesno"] = WORLD_FILES["sft_test"]
        for _, dataset, split in self.grounding_evaluations:
            files[f"grounding/{dataset}/{split}"] = rec_file(self.rec_file_of(dataset, split))
        if self.pope_evaluations:
            files.update({f"pope/{setting}": POPE_FILES[setting] for setting in POPE_SETTINGS})
        return files

    # --- grounding data -----------------------------------------------------------------------

    def rec_file_of(self, dataset: str, split: str) -> str:
        return self.grounding["splits"][dataset][split]

    @property
    def rec_val_files(self) -> list[str]:
        """Validation REC files: the grounding run's eval loss."""
        return [s["val"] for s in self.grounding["splits"].values() if "val" in s]

    @property
    def rec_files(self) -> list[str]:
        """Every REC file the config names (training and evaluation), sorted."""
        if not self.grounding:
            return []
        files = set(self.grounding["train_files"])
        files |= {name for splits in self.grounding["splits"].values() for name in splits.values()}
        return sorted(files)

    # --- preference pairs ---------------------------------------------------------------------

    @property
    def pair_source(self) -> str | None:
        """``world`` (the world's pairs file), ``on_policy`` (sampled from the start model), or
        None without a preference stage."""
        return self.preference.get("pairs", "world") if self.preference else None

    def _check_model(self) -> None:
        """The demo world's family is the own one; the real world names its checkpoint. (That
        the checkpoint is of ``model.family`` is checked when it is downloaded.)"""
        family = section(self.config, "model", "family", default=DEMO_FAMILY)
        world = self.config.get("world")
        if world == "demo" and family != DEMO_FAMILY:
            raise ConfigError(
                f"config model.family: the demo world builds a {DEMO_FAMILY!r} model, not {family!r}"
            )
        if world == "real" and not section(self.config, "model", "source"):
            raise ConfigError(
                "config model.source: the real world needs a checkpoint (HF hub repo id or folder)"
            )

    @property
    def on_policy_strategy(self) -> str:
        return (self.preference.get("on_policy") or {}).get("strategy", "sampling")

    def on_policy_settings(self) -> dict:
        """The on-policy pair settings the config gives (mllm.preference.on_policy)."""
        given = section(self.config, "preference", "on_policy", default={})
        return {key: value for key, value in given.items() if key not in ON_POLICY_WORKFLOW_KEYS}

    # --- checks -------------------------------------------------------------------------------

    def _check(self) -> None:
        self._check_model()
        runs = {"base", *self.sft_runs, *self.preference_runs}
        if self.grounding:
            runs.add(GROUNDING_STAGE)
        for stage in self.config["stages"]:
            if stage not in runs:
                raise ConfigError(
                    f"config stages: {stage!r} is neither 'base' nor an 'sft', 'grounding' or "
                    "'preference' run"
                )
        starts = {f"sft.{run}.start": spec["start"] for run, spec in self.sft_runs.items()}
        for part in ("grounding", "preference"):
            if self.config.get(part):
                starts[f"{part}.start"] = self.config[part]["start"]
        for key, start in starts.items():
            if start != "base" and start not in self.sft_runs:
                raise ConfigError(f"config {key}: unknown stage {start!r}")
        if self.grounding:
            if not self.rec_val_files:
                raise ConfigError(
                    "config grounding.splits: name at least one `val` split; it gives the "
                    "grounding run its eval loss"
                )
            for stage in self.grounding["eval_stages"]:
                if stage not in self.stages:
                    raise ConfigError(f"config grounding.eval_stages: {stage!r} is not a stage")
        if self.pair_source == "on_policy" and self.on_policy_strategy not in self.strategies:
            raise ConfigError(
                f"config preference.on_policy.strategy: {self.on_policy_strategy!r} is not a "
                "decoding.strategies preset"
            )
