"""Typed, validated configuration loaded from ``conf/<env>.yaml``.

Every key is declared below; an unknown key, a missing key or a value of the wrong type fails at
load time with an error naming the file and the dotted key. ``--set a.b=value`` overrides are
applied before validation, so they are checked the same way.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

# A key that only exists so `make demo` works on a laptop. Never use it with real user ids.
DEV_ONLY_PSEUDONYM_KEY = "recpipe-dev-only-key-do-not-use-in-production"


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the file and key."""


def checked(
    default: Any = dataclasses.MISSING,
    *,
    factory: Any = dataclasses.MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    keys: tuple[str, ...] | None = None,
    models: tuple[str, ...] | None = None,
) -> Any:
    """A config field with a value check applied at load (to each element of a list).

    ``ge/gt/le/lt`` bound a number (each value of a mapping); ``keys`` lists the keys a mapping
    may have (dates and timestamps are typed: :func:`_coerce_time` reads ISO strings). The check
    lives on the field, so defaults, YAML and ``--set`` overrides are all checked the same way.
    ``models`` marks a ``train`` key as a shape argument of those models' factories
    (:func:`recpipe.model.train.model_kwargs_from_config`).
    """
    meta: dict[str, Any] = {"checks": {"ge": ge, "gt": gt, "le": le, "lt": lt, "keys": keys}}
    if models is not None:
        meta["models"] = models
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def parse_ts(text: str) -> datetime.datetime:
    """An ISO-8601 timestamp string (``Z`` allowed; naive means UTC) as an aware datetime."""
    ts = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=datetime.UTC)


def _check_value(value: Any, checks: dict[str, Any], key: str, file: str) -> None:
    if isinstance(value, list):
        for i, v in enumerate(value):
            _check_value(v, checks, f"{key}[{i}]", file)
        return
    if isinstance(value, dict):
        allowed = checks.get("keys")
        for k, v in value.items():
            if allowed is not None and k not in allowed:
                raise ConfigError(f"{file}: unknown key '{key}.{k}' (allowed here: {sorted(allowed)})")
            _check_value(v, checks, f"{key}.{k}", file)
        return
    bounds: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
        "ge": (">=", lambda a, b: a >= b),
        "gt": (">", lambda a, b: a > b),
        "le": ("<=", lambda a, b: a <= b),
        "lt": ("<", lambda a, b: a < b),
    }
    for name, (sym, ok) in bounds.items():
        bound = checks.get(name)
        if bound is not None and isinstance(value, (int, float)) and not ok(value, bound):
            raise ConfigError(f"{file}: key '{key}' must be {sym} {bound}, got {value!r}")


# Metadata of a field that says where results are reported (or on what hardware the work runs),
# not what a stage computes: left out of the stages' skip-if-done fingerprints
# (recpipe.stages.base.config_part), so changing it does not redo finished work.
NOT_FINGERPRINTED = {"fingerprint": False}


@dataclass(frozen=True)
class SparkConfig:
    app_name: str = "recpipe"
    # Only used when `mode: local`; on a cluster spark-submit decides the master.
    master: str = "local[2]"
    log_level: str = "WARN"
    show_progress: bool = True
    conf: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LakeConfig:
    root: str
    backend: Literal["delta-rs", "delta-spark", "auto"] = "delta-rs"
    # Files older than this that no table version references are removed by `vacuum`.
    vacuum_retention_hours: float = checked(168.0, ge=0)
    commit_retries: int = checked(3, ge=0)
    # A stage that replaces partitions (features, examples) refuses, unless --force, when a
    # partition's row count would fall by more than this share of the stored one; an empty
    # result is never written (recpipe.guard). The publish has its own recommend.max_drop_share.
    max_drop_share: float = checked(0.5, ge=0, le=1)


@dataclass(frozen=True)
class SyntheticConfig:
    events: int = checked(200_000, ge=1)
    seed: int = 42
    start: datetime.date = datetime.date(2026, 10, 1)
    days: int = checked(14, ge=1)


@dataclass(frozen=True)
class DataConfig:
    source: Literal["synthetic", "raw"] = "synthetic"
    # Where raw event files (events/YYYY-MM-DD/HH.jsonl, items.jsonl) are read from.
    raw_dir: str = "./data/raw"
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    # What the log records: `impressions` (shown items, clicks labelled against them),
    # `clicks_only` (positives only: CTR-like features become click counts/shares, examples
    # sample negatives), or `auto` (detected from silver.events and logged).
    feedback: Literal["impressions", "clicks_only", "auto"] = "auto"


@dataclass(frozen=True)
class PathsConfig:
    # Root of models, checkpoints and evaluation reports ("" = <lake.root>/_artifacts).
    artifacts: str = ""


EPOCH_UNITS = ("s", "ms", "us")


@dataclass(frozen=True)
class ColumnSpec:
    """Where one canonical raw field comes from (a value of ``ingest.column_mapping``).

    ``column``: a source column (CSV/Parquet) or JSON key; ``unit``: that column holds epoch
    seconds/milliseconds/microseconds (``ts`` only); ``const``: the same value for every record.
    """

    column: str | None = None
    const: str | None = None
    unit: Literal["s", "ms", "us"] | None = None


def parse_column_spec(name: str, spec: str | dict[str, str]) -> ColumnSpec:
    """One ``ingest.column_mapping`` entry -> a :class:`ColumnSpec`; ConfigError naming the key."""
    from recpipe.constants import RAW_FIELDS

    key = f"ingest.column_mapping.{name}"
    if name not in RAW_FIELDS:
        raise ConfigError(f"key '{key}': not a canonical field (allowed: {RAW_FIELDS})")
    if isinstance(spec, str):
        spec = {"column": spec}
    unknown = sorted(set(spec) - {"column", "const", "unit"})
    if unknown:
        raise ConfigError(f"key '{key}': unknown spec key {unknown[0]!r} (allowed: column, const, unit)")
    if ("column" in spec) == ("const" in spec):
        raise ConfigError(f"key '{key}': give exactly one of 'column' or 'const', got {spec!r}")
    if "column" in spec and not spec["column"].strip():
        raise ConfigError(f"key '{key}': empty column name")
    unit = spec.get("unit")
    if unit is not None:
        if unit not in EPOCH_UNITS:
            raise ConfigError(f"key '{key}.unit' must be one of {list(EPOCH_UNITS)}, got {unit!r}")
        if name != "ts" or "column" not in spec:
            raise ConfigError(f"key '{key}.unit': only a 'ts' column has a unit (epoch s/ms/us)")
    return ColumnSpec(spec.get("column"), spec.get("const"), unit)  # type: ignore[arg-type]


@dataclass(frozen=True)
class IngestConfig:
    format: Literal["jsonl", "csv", "parquet"] = "jsonl"
    # canonical field -> where it comes from (unmapped fields keep their name): a source column
    # name, {column: NAME}, {column: NAME, unit: s|ms|us} (ts as epoch number) or {const: VALUE}.
    # Applies to every format (JSON keys for jsonl). See `recpipe ingest --help`.
    column_mapping: dict[str, str | dict[str, str]] = field(default_factory=dict)
    csv_delimiter: str = ","
    # A file under the batch folder that ingest does not read (other extension, empty, corrupt
    # gzip): `fail` stops the batch before anything is written, `skip` ingests the rest. Either
    # way the files and reasons are listed in the run summary (ops.runs).
    unknown_files: Literal["fail", "skip"] = "fail"
    # The batch fails (nothing published, the attempt recorded in ops.runs) when fewer than
    # this share of its input records pass validation (accepted or duplicate, not quarantined).
    min_accepted_share: float = checked(0.5, ge=0, le=1)
    # Source spellings mapped onto canonical event types (after strip + lower-case).
    event_type_aliases: dict[str, str] = field(default_factory=dict)
    allowed_event_types: list[str] = field(
        default_factory=lambda: ["impression", "click", "read", "like", "share", "hide"]
    )
    # Events before this instant are implausible -> quarantined as bad_timestamp.
    min_event_ts: datetime.datetime = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    # Events later than ingest time + this many seconds -> quarantined as future_timestamp.
    max_future_seconds: int = checked(86_400, ge=0)
    # Number of Spark tasks that read the raw files (0 = Spark's default parallelism).
    read_tasks: int = checked(0, ge=0)

    def __post_init__(self) -> None:
        self.column_specs()  # a bad mapping fails at load, naming its key

    def column_specs(self) -> dict[str, ColumnSpec]:
        """``column_mapping`` as typed specs, keyed by canonical field."""
        return {name: parse_column_spec(name, spec) for name, spec in self.column_mapping.items()}


@dataclass(frozen=True)
class PrivacyConfig:
    # The pseudonymization key is read from this environment variable.
    key_env: str = "RECPIPE_PSEUDONYM_KEY"
    # When the variable is unset: use the dev-only key (local demos) or fail (clusters).
    allow_dev_key: bool = False


@dataclass(frozen=True)
class QualityConfig:
    # A failed critical expectation stops the job (exit non-zero).
    fail_on_critical: bool = True
    mostly_required_non_null: float = checked(1.0, ge=0, le=1)


@dataclass(frozen=True)
class FeaturesConfig:
    """Feature tables as of a date (owned by recpipe.features)."""

    windows_days: list[int] = checked(factory=lambda: [1, 7, 28], ge=1)
    ctr_prior_strength: float = checked(20.0, ge=0)
    last_k_items: int = checked(10, ge=1)
    text_features: int = checked(256, ge=1)
    # The item's first `text_tokens` distinct title/text words, hashed into `text_token_buckets`
    # rows of an embedding the model learns (features.text): a text input learned on the clicks,
    # beside the fixed TF-IDF vector. 0 leaves the input out.
    text_tokens: int = checked(24, ge=0)
    text_token_buckets: int = checked(20_000, ge=1)
    # Half-life of the items' time-decayed click count: the model's item_trend feature and the
    # trending candidate source. A day suits the synthetic default; a news click log, where an
    # article's clicks fade within hours, wants an hour or two (README, "Real data").
    trend_half_life_hours: float = checked(24.0, gt=0)


@dataclass(frozen=True)
class ExamplesConfig:
    """Training examples (owned by recpipe.examples)."""

    attribution_window_minutes: int = checked(30, ge=1)
    negatives_per_positive: int = checked(4, ge=1)
    # Time split: train < validation_start <= validation < test_start <= test.
    validation_start: datetime.date = datetime.date(2026, 10, 11)
    test_start: datetime.date = datetime.date(2026, 10, 13)
    hash_buckets_user: int = checked(100_000, ge=1)
    hash_buckets_item: int = checked(50_000, ge=1)
    # Click-only sources: how the train split's negatives are drawn among the items clicked on
    # the same day (`popularity`: by click count, `uniform`: equally). Validation and test always
    # use uniform negatives, so the reported AUCs mean the same for every scheme.
    negative_sampling: Literal["popularity", "uniform"] = "uniform"
    # Daily runs (recpipe.stages): run date D builds the examples of [D - window_days, D - 1]; the
    # split moves with D: the window's last test_days days are test, the validation_days before
    # them validation, the rest train (validation_start/test_start fix the split of a backtest).
    window_days: int = checked(14, ge=1)
    validation_days: int = checked(1, ge=1)
    test_days: int = checked(1, ge=1)


@dataclass(frozen=True)
class TrainConfig:
    """Horovod training of the CTR model (owned by recpipe.model)."""

    model: Literal["dcn", "deepfm", "din"] = "dcn"
    # Model shape (recpipe.model.models): the deep tower's layer widths, DCN-v2 cross layers,
    # DeepFM's per-field vector size, dropout after each deep layer, L2 on embeddings and weights,
    # and the size the item text vector is projected to (0 = fed raw). Defaults chosen on the
    # synthetic default's validation split (README, "Model"): without the L2 and the projection
    # the model memorized items through the 256-dim text vector (test AUC 0.76 vs 0.82).
    # `models` names the factories that take the key (the one list of each model's shape keys).
    deep_units: list[int] = checked(factory=lambda: [256, 128], ge=1, models=("dcn", "deepfm", "din"))
    cross_layers: int = checked(3, ge=0, models=("dcn", "din"))
    fm_dim: int = checked(16, ge=1, models=("deepfm",))
    # din: width of the target-attention MLP over the clicked-item history (recpipe.model.models)
    attention_units: int = checked(32, ge=1, models=("din",))
    dropout: float = checked(0.0, ge=0, lt=1, models=("dcn", "deepfm", "din"))
    l2: float = checked(1e-4, ge=0, models=("dcn", "deepfm", "din"))
    vector_dim: int = checked(8, ge=0, models=("dcn", "deepfm", "din"))
    num_proc: int = checked(2, ge=1)
    epochs: int = checked(4, ge=1)
    batch_size: int = checked(1024, ge=1)
    learning_rate: float = checked(0.001, gt=0)
    warmup_epochs: int = checked(1, ge=0)
    checkpoint_every_steps: int = checked(200, ge=1)
    early_stopping_patience: int = checked(2, ge=0)
    seed: int = 7
    # GPU workers (README, "GPU workers"). precision: `mixed_float16` computes in float16 with
    # float32 weights, a float32 output and dynamic loss scaling (faster on GPUs with tensor cores,
    # slower on CPUs); the exported model is float32 either way. sparse_as_dense: Horovod densifies
    # the embeddings' sparse gradients and allreduces them (True), or allgathers them as
    # IndexedSlices (False: less traffic for huge vocabularies). Both change the model: fingerprinted.
    precision: Literal["float32", "mixed_float16"] = "float32"
    sparse_as_dense: bool = True
    # Position bias of logged clicks (recpipe.model.position; README, "Position bias"): feature =
    # position is a training-only input, fixed to 0 at serving; none = no correction; ipw = labels
    # divided by the examination curve fitted on the train split, 1/theta clipped at ipw_clip.
    position_bias: Literal["feature", "none", "ipw"] = "feature"
    ipw_clip: float = checked(10.0, ge=1)
    # Model inputs left out (an ablation, e.g. [user_category_ctr]); names from the examples'
    # feature spec, an unknown one fails training with the list of inputs. Fingerprinted.
    exclude_inputs: list[str] = field(default_factory=list)
    # GPUs per Spark executor, one Horovod rank per GPU (0 = none requested). On a cluster (> 0)
    # the session asks Spark for them (recpipe.spark.gpu_conf: spark.executor/task.resource.gpu.*)
    # for every task of the application. Ranks use a GPU whenever TensorFlow sees one.
    gpus_per_worker: int = field(default=0, metadata={**NOT_FINGERPRINTED, "checks": {"ge": 0}})
    # TensorFlow threads per rank: intra-op, and half as many inter-op (at least 1); 0 = the
    # machine's cores divided by the ranks on it. 1 pins each rank to one thread (the training
    # bench's scaling check). Speed only, not the model: not fingerprinted.
    threads_per_rank: int = field(default=0, metadata={**NOT_FINGERPRINTED, "checks": {"ge": 0}})
    # "" = <paths.artifacts>/models
    model_dir: str = ""
    auc_tolerance: float = checked(0.005, ge=0, le=1)
    # Daily runs (recpipe.stages): train on run date D unless a model was trained for one of the
    # every_days - 1 days before D (those days keep the current model; 1 = every day).
    every_days: int = checked(1, ge=1)
    # Experiment tracking (recpipe.model.tracking): the MLflow tracking URI, e.g. a server's
    # http(s)://host:5000; "" = the embedded SQLite store sqlite:///<lake.root>/_mlflow/mlflow.db
    # (artifacts in <lake.root>/_mlflow/artifacts; needs a local lake.root). A record only:
    # ops.model_registry decides promotion, and a tracking failure never fails training.
    tracking_uri: str = field(default="", metadata=NOT_FINGERPRINTED)
    experiment: str = field(default="recpipe", metadata=NOT_FINGERPRINTED)


@dataclass(frozen=True)
class CandidatesConfig:
    """Candidate sources (owned by recpipe.candidates); see README, "Recommendations"."""

    # Users with an event in these days before the run date get lists.
    active_days: int = checked(28, ge=1)
    covisit_neighbours: int = checked(20, ge=1)
    content_neighbours: int = checked(20, ge=1)
    content_min_cosine: float = checked(0.05, ge=-1, le=1)
    als_rank: int = checked(32, ge=1)
    als_max_iter: int = checked(10, ge=1)
    als_reg: float = checked(0.05, ge=0)
    als_alpha: float = checked(10.0, ge=0)
    # Items with less exposure than this are "uncertain" (the exploration pool).
    uncertain_impressions: int = checked(20, ge=0)
    # Each source is asked for oversample x its share of candidates_per_user (filters follow).
    oversample: float = checked(1.5, ge=1)
    # Share of candidates_per_user per source; a source left out gets 0.1.
    shares: dict[str, float] = checked(
        factory=lambda: {
            "co_visit": 0.25,
            "als": 0.25,
            "similar_content": 0.2,
            "trending": 0.15,
            "fresh": 0.15,
        },
        ge=0,
        keys=("co_visit", "als", "similar_content", "trending", "fresh"),
    )


@dataclass(frozen=True)
class RecommendConfig:
    """Candidates, ranking, re-ranking and publishing (owned by recpipe.candidates/scoring)."""

    top_n: int = checked(10, ge=1)
    candidates_per_user: int = checked(200, ge=1)
    # Diversity: at most this many items of one category in a list. With the freshness boost
    # below, chosen on the synthetic default's true click model (README, "Recommend"): a cap of 3
    # and a boost of 0.2 cost 12% of the expected clicks and fell below the ALS-only list.
    max_per_category: int = checked(4, ge=1)
    # Ranking score multiplied by (1 + fresh_boost * freshness), freshness 1 at publication and
    # 0 at the end of fresh_window_hours. The model already sees the item's age; keep it small.
    fresh_boost: float = checked(0.05, ge=0)
    explore_share: float = checked(0.1, ge=0, le=1)
    # Explored slots draw uniformly from the first this-many fresh or uncertain eligible items.
    explore_pool_size: int = checked(20, ge=1)
    fresh_window_hours: int = checked(48, ge=1)
    max_item_age_days: int = checked(14, ge=1)
    seed: int = 11
    # Publish refuses (PublishCheckError, last lists stay): a list or row count that falls by more
    # than max_drop_share against the last publish (unless --force), and more than
    # max_short_share of the users with a list shorter than top_n.
    max_drop_share: float = checked(0.5, ge=0, le=1)
    max_short_share: float = checked(0.05, ge=0, le=1)


@dataclass(frozen=True)
class EvaluateConfig:
    """Offline evaluation (owned by recpipe.evaluation)."""

    k: int = checked(10, ge=1)
    # Clicks in [run date, run date + horizon) are the ground truth for that date's lists.
    horizon_days: int = checked(7, ge=1)
    # "" = <paths.artifacts>/reports
    report_dir: str = ""
    # Also evaluate the lists the fallback popularity ranker would have published from the same
    # stored candidates and re-rank (policy "fallback_ranker"): is the model better than what it
    # replaces? Re-reads the run's history (~30 s on the demo); skipped when the published lists
    # are that ranker's own.
    fallback_lists: bool = True


@dataclass(frozen=True)
class StreamConfig:
    """`recpipe stream`: Structured Streaming over the landing folder (owned by recpipe.events.stream)."""

    # Structured Streaming checkpoint ("" = <lake.root>/_checkpoints/stream/<name>).
    checkpoint_dir: str = ""
    # One query per name: its checkpoint and the idempotency tokens of its micro-batches.
    name: str = "landing"
    # Continuous mode: a micro-batch every this many seconds (--once: all files now, then stop).
    trigger_seconds: int = checked(60, ge=1)
    # At most this many new files per micro-batch (0 = every new file in one micro-batch).
    max_files_per_trigger: int = checked(0, ge=0)
    # Update gold.user_profiles from each micro-batch's accepted events.
    update_profiles: bool = True


@dataclass(frozen=True)
class ProfilesConfig:
    """gold.user_profiles: decayed interests per user (owned by recpipe.features.profiles)."""

    # An event's weight halves every this many hours.
    half_life_hours: float = checked(168.0, gt=0)
    # The user's last this-many distinct positively-used items.
    recent_items: int = checked(20, ge=1)


@dataclass(frozen=True)
class SegmentsConfig:
    """gold.user_segments (owned by recpipe.features.segments)."""

    # name -> rule over a user's profile, e.g. "interest.sports >= 0.3", "days_since_last_seen > 14"
    # (README, "Segments" lists the fields); rules joined with `and`.
    rules: dict[str, str] = field(default_factory=dict)
    # KMeans clusters on the users' interest shares (0 = none), labelled by their top categories.
    clusters: int = checked(0, ge=0)
    # The clusters' vectors: the shares of at most this many categories (the largest overall).
    cluster_categories: int = checked(50, ge=1)
    seed: int = 5

    def __post_init__(self) -> None:
        from recpipe.features.segment_rules import RuleError, parse_rules

        try:
            parse_rules(self.rules)  # a bad rule fails at load, naming its key and token
        except RuleError as exc:
            raise ConfigError(str(exc)) from None


SIMULATE_ARMS = ("recpipe", "previous", "popularity", "random")


@dataclass(frozen=True)
class SimulateConfig:
    """`recpipe simulate`: the closed loop on the synthetic world (owned by recpipe.simulation)."""

    # Arm -> share of users (stable hash of the user id); arms: recpipe (the published lists),
    # previous (the same candidates ranked by the model promoted before the one behind the
    # published lists: what the retrain is worth), popularity (most popular allowed items),
    # random (uniform over allowed items).
    arms: dict[str, float] = checked(
        factory=lambda: {"recpipe": 0.5, "popularity": 0.25, "random": 0.25},
        gt=0,
        le=1,
        keys=SIMULATE_ARMS,
    )
    # Human users arriving per day on average (one request each, top_n items shown).
    users_per_day: int = checked(1000, ge=1)
    # Items published on each simulated day (drawn like the generator's).
    new_items_per_day: int = checked(60, ge=0)
    # Interest drift: log-interests move by this times a fixed normal direction per day.
    drift_per_day: float = checked(0.03, ge=0)
    seed: int = 7
    # Confidence intervals are 1 - alpha.
    alpha: float = checked(0.05, gt=0, lt=1)

    def __post_init__(self) -> None:
        total = sum(self.arms.values())
        if not self.arms or abs(total - 1.0) > 1e-6:
            raise ConfigError(f"simulate.arms: the shares must add up to 1, got {total:g} ({self.arms})")


@dataclass(frozen=True)
class Config:
    mode: Literal["local", "cluster"]
    lake: LakeConfig
    spark: SparkConfig = field(default_factory=SparkConfig)
    data: DataConfig = field(default_factory=DataConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    examples: ExamplesConfig = field(default_factory=ExamplesConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    candidates: CandidatesConfig = field(default_factory=CandidatesConfig)
    recommend: RecommendConfig = field(default_factory=RecommendConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    profiles: ProfilesConfig = field(default_factory=ProfilesConfig)
    segments: SegmentsConfig = field(default_factory=SegmentsConfig)
    simulate: SimulateConfig = field(default_factory=SimulateConfig)
    source_file: str = "<dict>"

    def artifacts_dir(self, kind: str) -> str:
        """Where ``kind`` artifacts go: ``train.model_dir`` / ``evaluate.report_dir`` when set,
        else ``<paths.artifacts>/<kind>`` with ``paths.artifacts`` defaulting to
        ``<lake.root>/_artifacts``. Never the working directory unless configured so."""
        explicit = {"models": self.train.model_dir, "reports": self.evaluate.report_dir}.get(kind, "")
        if explicit:
            return explicit
        root = self.paths.artifacts or f"{self.lake.root.rstrip('/')}/_artifacts"
        return f"{root.rstrip('/')}/{kind}"

    def pseudonym_key(self) -> str:
        """The secret used to pseudonymize user ids (from the environment only)."""
        key = os.environ.get(self.privacy.key_env)
        if key:
            return key
        if self.privacy.allow_dev_key:
            return DEV_ONLY_PSEUDONYM_KEY
        raise ConfigError(
            f"{self.source_file}: environment variable {self.privacy.key_env} is not set and "
            "privacy.allow_dev_key is false; set the pseudonymization key in the environment"
        )


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(tp: Any, value: Any, key: str, file: str) -> Any:
    origin = get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{file}: key '{key}' must be a mapping, got {type(value).__name__}")
        return _build(tp, value, key, file)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{file}: key '{key}' must be one of {list(allowed)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key, file)
            except ConfigError:
                continue
        raise ConfigError(f"{file}: key '{key}' has wrong type {type(value).__name__}")
    if origin is list:
        (item_tp,) = get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{file}: key '{key}' must be a list, got {type(value).__name__}")
        return [_coerce(item_tp, v, f"{key}[{i}]", file) for i, v in enumerate(value)]
    if origin is dict:
        k_tp, v_tp = get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{file}: key '{key}' must be a mapping, got {type(value).__name__}")
        out = {}
        for k, v in value.items():
            # Spark conf values are strings; accept YAML scalars and stringify them.
            if v_tp is str and isinstance(v, (int, float, bool)):
                v = str(v).lower() if isinstance(v, bool) else str(v)
            out[_coerce(k_tp, k, f"{key}.{k}", file)] = _coerce(v_tp, v, f"{key}.{k}", file)
        return out
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is datetime.date or tp is datetime.datetime:
        return _coerce_time(tp, value, key, file)
    if tp is str and isinstance(value, (datetime.date, datetime.datetime)):
        # YAML reads unquoted 2026-10-01 as a date; a string key takes its ISO text.
        return value.isoformat()
    if tp in (str, int, float, bool):
        if isinstance(value, bool) and tp is not bool:
            raise ConfigError(f"{file}: key '{key}' must be {tp.__name__}, got bool")
        if not isinstance(value, tp):
            raise ConfigError(
                f"{file}: key '{key}' must be {tp.__name__}, got {type(value).__name__} ({value!r})"
            )
        return value
    raise ConfigError(f"{file}: key '{key}' has unsupported type {_type_name(tp)}")


def _coerce_time(tp: Any, value: Any, key: str, file: str) -> Any:
    """A date key from a date or an ISO date string; a timestamp key from a datetime or an ISO
    timestamp string (``Z`` allowed; naive means UTC)."""
    if tp is datetime.date:
        if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
            return value
        if isinstance(value, str):
            try:
                return datetime.date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{file}: key '{key}' must be an ISO date like 2026-10-01, got {value!r}")
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    if isinstance(value, str):
        try:
            return parse_ts(value)
        except ValueError:
            pass
    raise ConfigError(
        f"{file}: key '{key}' must be an ISO timestamp like 2026-10-01T00:00:00Z, got {value!r}"
    )


def _build(cls: type, data: dict[str, Any], prefix: str, file: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source_file"}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"{file}: unknown key '{where}' (allowed here: {sorted(fields)})")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], key, file)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{file}: missing required key '{key}'")
        checks = f.metadata.get("checks")
        if checks:
            value = (
                kwargs[name]
                if name in kwargs
                else (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
            )
            _check_value(value, checks, key, file)
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # a __post_init__ check names the key; add the file
        raise ConfigError(f"{file}: {exc}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value``; the value is read as YAML (numbers, booleans, lists)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError):
        # e.g. 2026-13-01 looks like a YAML date but is none: keep the text, the key's check names it.
        value = raw.strip()
    return key.split("."), value


def _split_override_path(parts: list[str]) -> list[str]:
    """Join the tail of a path that runs into a mapping (``spark.conf.spark.sql.x`` -> 3 keys)."""
    tp: Any = Config
    for i, part in enumerate(parts):
        if get_origin(tp) is dict:
            return parts[:i] + [".".join(parts[i:])]
        if not dataclasses.is_dataclass(tp):
            return parts
        hints = typing.get_type_hints(tp)
        if part not in hints:
            return parts
        tp = hints[part]
    return parts


def apply_overrides(data: dict[str, Any], overrides: list[str], file: str) -> dict[str, Any]:
    data = dict(data)
    for text in overrides:
        parts, value = parse_override(text)
        parts = _split_override_path(parts)
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"{file}: --set {text}: '{'.'.join(parts[: i + 1])}' is not a mapping")
            node[part] = child = dict(child)
            node = child
        node[parts[-1]] = value
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load and validate a YAML config file, applying ``key=value`` overrides."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {file}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: top level must be a mapping")
    return config_from_dict(data, overrides or [], file)


def config_from_dict(
    data: dict[str, Any], overrides: list[str] | None = None, file: str = "<dict>"
) -> Config:
    data = apply_overrides(data, overrides or [], file)
    cfg: Config = _build(Config, data, "", file)
    _cross_checks(cfg, file)
    return dataclasses.replace(cfg, source_file=file)


def _cross_checks(cfg: Config, file: str) -> None:
    """Checks that relate two keys (each key's own range is checked on its field)."""
    ex = cfg.examples
    if ex.validation_start >= ex.test_start:
        raise ConfigError(
            f"{file}: key 'examples.validation_start' ({ex.validation_start}) must be before "
            f"'examples.test_start' ({ex.test_start})"
        )
    if ex.window_days <= ex.validation_days + ex.test_days:
        raise ConfigError(
            f"{file}: key 'examples.window_days' ({ex.window_days}) must exceed "
            f"'examples.validation_days' + 'examples.test_days' ({ex.validation_days} + "
            f"{ex.test_days}): a daily window needs days left to train on"
        )
    if cfg.train.warmup_epochs > cfg.train.epochs:
        raise ConfigError(
            f"{file}: key 'train.warmup_epochs' ({cfg.train.warmup_epochs}) must not exceed "
            f"'train.epochs' ({cfg.train.epochs})"
        )
    tc, instances = cfg.train, cfg.spark.conf.get("spark.executor.instances", "")
    if cfg.mode == "cluster" and tc.gpus_per_worker and instances.isdigit():
        if int(instances) * tc.gpus_per_worker < tc.num_proc:
            raise ConfigError(
                f"{file}: key 'train.num_proc' ({tc.num_proc}) exceeds 'spark.conf.spark.executor.instances' "
                f"x 'train.gpus_per_worker' ({instances} x {tc.gpus_per_worker}): with GPU scheduling an "
                "executor runs one task per GPU, and Horovod needs one concurrent task per rank"
            )


def replace(cfg: Config, overrides: list[str]) -> Config:
    """A copy of ``cfg`` with ``key=value`` overrides applied and re-validated."""
    data = dataclasses.asdict(cfg)
    file = data.pop("source_file")
    return config_from_dict(data, overrides, file)
