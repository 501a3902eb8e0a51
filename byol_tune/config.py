"""One typed configuration: config field = YAML key = Tune parameter = logged hparam.

Defaults are tuned for the embedded shapes dataset on a CPU (see ``configs/`` for the BYOL paper's
ImageNet setup, lightly's example and others). Fields left ``None`` are derived from the dataset and
backbone when training starts and logged with their resolved values.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from byol_tune import metrics
from byol_tune.errors import ConfigError, reason
from byol_tune.io import is_folder_name

DatasetName = Literal["shapes", "cifar10", "cifar100", "stl10", "imagefolder", "vectors"]
# what lightning.Trainer accepts for ``precision`` and ``accelerator`` (checked here, before any run folder)
Precision = Literal[
    "32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "64", "16", "bf16",
    "transformer-engine", "transformer-engine-float16",
]  # fmt: skip
# Lightning's "true" half precisions cast the whole module, the target network too, and an EMA step
# (1 - tau) * (online - target) is then below half the spacing of bfloat16 or float16 values: the target
# never moves (checked: 100 steps at tau 0.996 towards weights 20% away left a bfloat16 target unchanged)
HALF_TRUE = ("bf16-true", "16-true", "transformer-engine", "transformer-engine-float16")  # TE: weights too
HALF_TRUE_REASON = (
    "the target network's EMA steps are too small for half-precision weights, so it would never move; "
    "use bf16-mixed or 16-mixed (float32 weights, half-precision maths)"
)

# DeepSpeed accumulates gradients itself, and Lightning then calls optimizer_step for every batch: the
# module's EMA and tau would step per micro-batch, not per optimizer step
SELF_ACCUMULATING_REASON = (
    "the strategy accumulates gradients itself and Lightning steps the optimizer every batch, so the "
    "target's EMA and tau would move per micro-batch; use 1 and a larger batch_size"
)


class BYOLConfig(BaseModel):
    """Everything a BYOL run needs. Unknown keys are errors, never silently ignored."""

    # inf and nan are never a learning rate or a probability; 16 in a YAML file is the text "16"
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, allow_inf_nan=False, coerce_numbers_to_str=True
    )

    # data
    dataset: DatasetName = "shapes"
    data_dir: str | None = None
    image_size: int | None = Field(None, ge=8, description="None: the dataset's native size")
    shapes_train_size: int = Field(5000, ge=10)
    shapes_val_size: int = Field(1000, ge=10)
    shapes_seed: int = 0
    val_fraction: float = Field(0.1, gt=0, lt=1, description="for data without a val split")

    # model
    backbone: str = "small_cnn"
    small_image_stem: bool | None = Field(None, description="None: on for resnets below 64 px")
    input_norm: bool | None = Field(None, description="None: on for small_cnn")
    encoder_dim: int = Field(256, ge=1, description="mlp backbone output size")
    encoder_hidden_dim: int = Field(256, ge=1, description="mlp backbone hidden size")
    projector_hidden_dim: int = Field(512, ge=1)
    projector_out_dim: int = Field(128, ge=1)
    predictor_hidden_dim: int = Field(512, ge=1)

    # optimisation
    optimizer: Literal["sgd", "adamw", "lars"] = "adamw"
    learning_rate: float = Field(2e-3, gt=0)
    lr_scaling: Literal["none", "linear", "sqrt"] = Field(
        "none", description="scaled_learning_rate = learning_rate * f(batch_size / 256)"
    )
    weight_decay: float = Field(0.05, ge=0)
    sgd_momentum: float = Field(0.9, ge=0, lt=1, description="SGD/LARS momentum (not tau)")
    exclude_bias_norm: bool = Field(True, description="no weight decay or LARS on biases and norms")
    warmup_epochs: float = Field(1.0, ge=0)
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    lr_scheduler_interval: Literal["step", "epoch"] = "step"
    batch_size: int = Field(64, ge=2)
    max_epochs: int = Field(20, ge=1)
    accumulate_grad_batches: int = Field(1, ge=1)

    # target network
    tau_base: float = Field(0.996, ge=0, le=1)
    tau_schedule: Literal["cosine", "constant"] = "cosine"
    tau_schedule_steps: int | None = Field(None, ge=1, description="None: all optimizer steps")

    # augmentation (Grill et al. 2020, Table 6; extras default off except on the embedded data)
    crop_min_scale: float = Field(0.3, gt=0, le=1)
    brightness: float = Field(0.4, ge=0)
    contrast: float = Field(0.4, ge=0)
    saturation: float = Field(0.4, ge=0)
    hue: float = Field(0.5, ge=0, le=0.5)
    jitter_p: float = Field(0.8, ge=0, le=1)
    grayscale_p: float = Field(0.3, ge=0, le=1)
    blur: bool | None = Field(None, description="None: off at 32 px and below")
    solarize_p: float = Field(0.2, ge=0, le=1, description="second view only, as in the paper")
    channel_permute_p: float = Field(0.5, ge=0, le=1)
    invert_p: float = Field(0.2, ge=0, le=1)
    augment_on_device: bool = Field(True, description="batched augmentation in the training step")
    vector_noise_std: float = Field(0.1, ge=0, description="vectors: gaussian noise per view")
    vector_mask_p: float = Field(0.2, ge=0, lt=1, description="vectors: feature dropout per view")

    # evaluation
    eval_every: int = Field(2, ge=1, description="kNN evaluation every N epochs and at the end")
    knn_k: int = Field(200, ge=1)
    knn_temperature: float = Field(0.1, ge=metrics.KNN_MIN_TEMPERATURE)
    linear_probe: bool = True

    # speed: each changes numerics a little, so each is off (benchmarks/README.md, RESULTS.md)
    views_as_one_batch: bool = Field(
        False, description="forward both views as one batch; BatchNorm then normalises over both views"
    )
    channels_last: bool = Field(False, description="NHWC memory format for image backbones and inputs")
    compile_augment: bool = Field(
        False,
        description="torch.compile the in-memory image augmentation's colour ops into fused loops; "
        "views equal up to float rounding; the first batches compile (seconds)",
    )

    # runtime
    seed: int = 0
    accelerator: str = "auto"
    devices: int = Field(1, ge=1)
    strategy: str = "auto"
    precision: Precision = "32-true"
    sync_batchnorm: bool = False
    num_workers: int = Field(0, ge=0)
    output_dir: str = "runs"
    name: str = "byol"

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str) -> str:
        if not is_folder_name(value):
            raise ValueError("a folder name inside output_dir, without '/'")
        return value

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_text(cls, value: Any) -> Any:
        value = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if value in HALF_TRUE:
            raise ValueError(HALF_TRUE_REASON)
        return value

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        from byol_tune.parts.backbones import backbone_names

        if value not in backbone_names():
            raise ValueError(f"unknown backbone; choose from {', '.join(backbone_names())}")
        return value

    @field_validator("accelerator")
    @classmethod
    def _known_accelerator(cls, value: str) -> str:
        from lightning.pytorch.accelerators import AcceleratorRegistry  # plugins register theirs here

        names = ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())]
        if value not in names:  # the names Lightning's Trainer accepts, as it spells them
            raise ValueError(f"unknown accelerator; choose from {', '.join(names)}")
        return value

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        from lightning.pytorch.strategies import StrategyRegistry  # lazily: only to read its names

        names = ["auto", *StrategyRegistry.available_strategies()]
        if value.lower() not in names:  # Lightning reads the name in lower case
            raise ValueError(f"unknown strategy; choose from {', '.join(names)}")
        return value.lower()

    @model_validator(mode="before")
    @classmethod
    def _no_bool_number_mixups(cls, data: Any) -> Any:
        """pydantic's lax mode reads true as 1 and 1 as true; in a config either is a slip, refused."""
        if not isinstance(data, dict):
            return data
        for key, value in data.items():
            if key not in cls.model_fields or not isinstance(value, bool | int | float):
                continue
            admits = set(field_types(key))
            if isinstance(value, bool) and bool not in admits and admits & {int, float}:
                raise ValueError(f"{key}: expected a number, got {str(value).lower()}")
            if not isinstance(value, bool) and bool in admits and not admits & {int, float}:
                raise ValueError(f"{key}: expected true or false, got {value}")
        return data

    @model_validator(mode="after")
    def _check(self) -> BYOLConfig:
        if self.dataset in ("imagefolder", "cifar10", "cifar100", "stl10", "vectors") and (not self.data_dir):
            raise ValueError(f"data_dir is required for dataset {self.dataset!r}")
        if self.dataset == "vectors" and self.backbone != "mlp":
            raise ValueError("backbone must be 'mlp' for dataset 'vectors'")
        if self.strategy.startswith("deepspeed") and self.accumulate_grad_batches > 1:
            raise ValueError(
                f"accumulate_grad_batches {self.accumulate_grad_batches} with strategy {self.strategy!r}: "
                + SELF_ACCUMULATING_REASON
            )
        if self.dataset == "shapes" and self.data_dir:
            raise ValueError(
                f"data_dir {self.data_dir!r}: not read by dataset 'shapes' (generated in memory); "
                "set dataset to the one stored there"
            )
        return self

    def scaled_learning_rate(self) -> float:
        """The learning rate the optimizer uses: a separate, logged value, never a rewrite."""
        ratio = self.batch_size * self.accumulate_grad_batches * self.devices / 256
        if self.lr_scaling == "linear":
            return self.learning_rate * ratio
        if self.lr_scaling == "sqrt":
            return self.learning_rate * ratio**0.5
        return self.learning_rate


def field_names() -> tuple[str, ...]:
    return tuple(BYOLConfig.model_fields)


def _unknown_key_message(key: str, where: str) -> str:
    close = difflib.get_close_matches(key, field_names(), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{where}: unknown config key {key!r}{hint}"


def make_config(values: dict[str, Any], where: str = "config") -> BYOLConfig:
    """Validate ``values`` into a config; any problem becomes one :class:`ConfigError` line."""
    for key in values:
        if key not in BYOLConfig.model_fields:
            raise ConfigError(_unknown_key_message(str(key), where))
    try:
        return BYOLConfig(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        got = f" (got {error['input']!r})" if key in values else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{where}: {key + ': ' if key else ''}{message}{got}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key given twice in one mapping (safe_load keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, typing.Hashable):
                continue  # SafeLoader's own error names an unhashable key
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; missing, unreadable or non-mapping files error."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: a folder, not a YAML config file")
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or reason(exc)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML text file (not UTF-8 text)") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {reason(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` with YAML-typed values (``lr=1e-3`` is a float, ``blur=false`` a bool)."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected key=value")
        key, raw = key.strip(), raw.strip()
        if key in values:
            raise ConfigError(f"--set {key}: given twice; give each key once")
        if not raw and key in BYOLConfig.model_fields and type(None) not in field_types(key):
            raise ConfigError(f"--set {key}=: empty value, and {key} cannot be null; give it a value")
        if raw and raw not in ("null", "~") and _wants_text(key):  # name=2024, precision=16: as typed
            values[key] = raw
            continue
        try:
            value = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r}") from None
        values[key] = number_or_value(value)
    return values


def field_types(key: str) -> tuple[Any, ...]:
    """The types a config key accepts: ``(int, NoneType)`` for ``int | None``; a ``Literal`` stays whole."""
    annotation = BYOLConfig.model_fields[key].annotation
    kinds = () if typing.get_origin(annotation) is Literal else typing.get_args(annotation)
    return kinds or (annotation,)


def _wants_text(key: str) -> bool:
    """Whether the config key holds text only (a path, a name, a choice of words)."""
    if key not in BYOLConfig.model_fields:
        return False
    return all(k in (str, type(None)) or typing.get_origin(k) is Literal for k in field_types(key))


SHIPPED_CONFIGS = Path(__file__).parent / "configs"


def shipped_configs() -> dict[str, Path]:
    """Config files that ship with the package, by name (``lightly_example``, ...)."""
    return {p.stem: p for p in sorted(SHIPPED_CONFIGS.glob("*.yaml"))}


def resolve_config_path(path: str | Path) -> Path:
    """A file path, or the name of a shipped config."""
    candidate = Path(path)
    if candidate.exists():
        return candidate
    shipped = shipped_configs()
    if candidate.suffix:
        if candidate.suffix in (".yaml", ".yml") and candidate.stem in shipped:
            raise ConfigError(f"{path}: no such config file; the shipped one is named {candidate.stem!r}")
        return candidate  # read_yaml_mapping says it is missing
    if str(path) not in shipped:
        raise ConfigError(f"{path}: no such config file, nor a shipped config ({', '.join(shipped)})")
    return shipped[str(path)]


def number_or_value(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` as a string; a number is what anyone typing it means."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> BYOLConfig:
    """Config from a YAML file or shipped config name (or defaults), with ``key=value`` overrides."""
    if path is not None:
        path = resolve_config_path(path)
    values = read_yaml_mapping(path) if path is not None else {}
    values.update(parse_overrides(overrides or []))
    return make_config(values, where=str(path) if path is not None else "config")


def save_config(config: BYOLConfig, path: str | Path) -> None:
    """Write a complete config (every field) atomically."""
    from byol_tune.io import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(config.model_dump(), sort_keys=False))
