"""Table names, column names and schemas, shared by code and tests (defined once)."""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DateType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

# -- tables -------------------------------------------------------------------------------------
BRONZE_EVENTS_RAW = "bronze.events_raw"
BRONZE_QUARANTINE = "bronze.quarantine"
SILVER_EVENTS = "silver.events"
SILVER_ITEMS = "silver.items"
OPS_RUNS = "ops.runs"
OPS_DATA_QUALITY = "ops.data_quality"
GOLD_ITEM_FEATURES = "gold.item_features"
GOLD_USER_FEATURES = "gold.user_features"
GOLD_TRAINING_EXAMPLES = "gold.training_examples"
# Near-real-time (recpipe stream): decayed interests per user, and the segments read from them.
GOLD_USER_PROFILES = "gold.user_profiles"
GOLD_USER_SEGMENTS = "gold.user_segments"

# -- columns ------------------------------------------------------------------------------------
EVENT_ID = "event_id"
USER_ID = "user_id"
ITEM_ID = "item_id"
EVENT_TYPE = "event_type"
EVENT_TS = "event_ts"
EVENT_DATE = "event_date"
SESSION_ID = "session_id"
REQUEST_ID = "request_id"
POSITION = "position"
DWELL_MS = "dwell_ms"
DEVICE = "device"
COUNTRY = "country"
PROPENSITY = "propensity"
IS_HISTORY = "is_history"
BATCH_ID = "batch_id"
INGESTED_AT = "ingested_at"
SOURCE_FILE = "source_file"
LINE = "line"
RAW = "raw"
REASON = "reason"  # a quarantine reason; in silver.events and gold.recommendations, a reason code
DETAIL = "detail"
# The serving-log contract (README "Serving-log contract"): what a served impression carries besides
# request_id, position and propensity: the run id of the published list it came from, the
# policy/arm that served it, and the recommendation's reason code (REASON).
LIST_RUN_ID = "list_run_id"
ARM = "arm"
# Columns that hold a user's id (the pseudonym, or the raw record with the raw id): left out of
# Delta per-file statistics, so that no _delta_log file holds a copy of a user (recpipe.privacy).
PERSONAL_COLUMNS = (USER_ID, RAW)

# Feature tables and training examples (recpipe.features).
AS_OF_DATE = "as_of_date"
FEATURE_TS = "feature_ts"
EXAMPLE_ID = "example_id"
LABEL = "label"
SAMPLED = "sampled"
SPLIT = "split"
SPLITS = ["train", "validation", "test"]
FEATURE_SPEC_FILE = "_feature_spec.json"

# Raw source fields (the JSONL contract of `recpipe generate` and the importers).
RAW_FIELDS = [
    "event_id",
    "user_id",
    "item_id",
    "event_type",
    "ts",
    "session_id",
    "request_id",
    "position",
    "dwell_ms",
    "device",
    "country",
    "propensity",
    "is_history",
    # serving-log fields (optional; a record with list_run_id is a served event, see below)
    LIST_RUN_ID,
    ARM,
    REASON,
]
SERVING_LOG_FIELDS = [LIST_RUN_ID, ARM, REASON]
REQUIRED_RAW_FIELDS = ["user_id", "item_id", "event_type", "ts"]

# Quarantine reasons, in the order a record is checked.
MALFORMED = "malformed"
MISSING_FIELD = "missing_field"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
BAD_TIMESTAMP = "bad_timestamp"
FUTURE_TIMESTAMP = "future_timestamp"
INVALID_FIELD = "invalid_field"
QUARANTINE_REASONS = [
    MALFORMED,
    MISSING_FIELD,
    UNKNOWN_EVENT_TYPE,
    BAD_TIMESTAMP,
    FUTURE_TIMESTAMP,
    INVALID_FIELD,
]

# -- schemas ------------------------------------------------------------------------------------
EVENTS_RAW_SCHEMA = StructType(
    [
        StructField(BATCH_ID, StringType()),
        StructField(SOURCE_FILE, StringType()),
        StructField(LINE, LongType()),
        StructField(RAW, StringType()),
        StructField(INGESTED_AT, TimestampType()),
    ]
)

QUARANTINE_SCHEMA = StructType(
    [
        StructField(BATCH_ID, StringType()),
        StructField(SOURCE_FILE, StringType()),
        StructField(LINE, LongType()),
        StructField(RAW, StringType()),
        StructField(REASON, StringType()),
        StructField(DETAIL, StringType()),
        StructField(INGESTED_AT, TimestampType()),
    ]
)

# The columns every silver.events table has (also those written before the serving-log contract);
# ingest writes SILVER_EVENTS_FULL_SCHEMA (these + SERVING_LOG_SCHEMA).
SILVER_EVENTS_SCHEMA = StructType(
    [
        StructField(EVENT_ID, StringType()),
        StructField(USER_ID, StringType()),
        StructField(ITEM_ID, StringType()),
        StructField(EVENT_TYPE, StringType()),
        StructField(EVENT_TS, TimestampType()),
        StructField(SESSION_ID, StringType()),
        StructField(REQUEST_ID, StringType()),
        StructField(POSITION, IntegerType()),
        StructField(DWELL_MS, LongType()),
        StructField(DEVICE, StringType()),
        StructField(COUNTRY, StringType()),
        StructField(PROPENSITY, DoubleType()),
        StructField(IS_HISTORY, BooleanType()),
        StructField(BATCH_ID, StringType()),
        StructField(INGESTED_AT, TimestampType()),
        StructField(EVENT_DATE, DateType()),
    ]
)
# The serving-log columns of silver.events (nullable; null for unserved logs). A table written
# before the serving-log contract lacks them until the first ingest after the upgrade adds them
# (rows stored before read them as null), so they come after the columns above.
SERVING_LOG_SCHEMA = StructType([StructField(c, StringType()) for c in SERVING_LOG_FIELDS])
# Every column of silver.events as ingest writes it.
SILVER_EVENTS_FULL_SCHEMA = StructType(SILVER_EVENTS_SCHEMA.fields + SERVING_LOG_SCHEMA.fields)

SILVER_ITEMS_SCHEMA = StructType(
    [
        StructField(ITEM_ID, StringType()),
        StructField("title", StringType()),
        StructField("text", StringType()),
        StructField("category", StringType()),
        StructField("subcategory", StringType()),
        StructField("tags", ArrayType(StringType())),
        StructField("publisher", StringType()),
        StructField("published_ts", TimestampType()),
        StructField("expires_ts", TimestampType()),
        StructField("language", StringType()),
        StructField("status", StringType()),
        StructField(BATCH_ID, StringType()),
        StructField("updated_at", TimestampType()),
    ]
)

OPS_RUNS_SCHEMA = StructType(
    [
        StructField("run_id", StringType()),
        StructField("job", StringType()),
        StructField(BATCH_ID, StringType()),
        StructField("status", StringType()),
        StructField("started_at", TimestampType()),
        StructField("finished_at", TimestampType()),
        StructField("duration_s", DoubleType()),
        StructField("input_records", LongType()),
        StructField("accepted", LongType()),
        StructField("duplicates", LongType()),
        StructField("quarantined", MapType(StringType(), LongType())),
        StructField("table_versions", MapType(StringType(), LongType())),
        StructField("summary_json", StringType()),
        # Stage contract (recpipe.stages): one row per attempt of a stage for a run date. Tables
        # created before these columns existed still read: recpipe.stages.runs fills them from
        # summary_json, and writes to such a table keep to its columns.
        StructField("run_date", DateType()),
        StructField("mode", StringType()),
        StructField("reason", StringType()),
        StructField("fingerprint", StringType()),
        StructField("input_versions", MapType(StringType(), LongType())),
        StructField("counts", MapType(StringType(), LongType())),
    ]
)
# The columns of ops.runs before the stage contract (ingest's reconciliation only).
OPS_RUNS_BASE_COLUMNS = OPS_RUNS_SCHEMA.fieldNames()[:13]

DATA_QUALITY_SCHEMA = StructType(
    [
        StructField("run_id", StringType()),
        StructField("table_name", StringType()),
        StructField("table_version", LongType()),
        StructField("suite", StringType()),
        StructField("expectation", StringType()),
        StructField("column_name", StringType()),
        StructField("critical", BooleanType()),
        StructField("success", BooleanType()),
        StructField("element_count", LongType()),
        StructField("unexpected_count", LongType()),
        StructField("details", StringType()),
        StructField("checked_at", TimestampType()),
    ]
)

# -- candidates and recommendations (recpipe.candidates / recpipe.scoring) ------------------------
GOLD_CANDIDATES = "gold.candidates"
GOLD_RECOMMENDATIONS = "gold.recommendations"
RUN_DATE = "run_date"
SOURCE = "source"
SOURCE_SCORE = "source_score"
RANK = "rank"
SCORE = "score"
REASON_DETAIL = "reason_detail"
MODEL_VERSION = "model_version"
RUN_ID = "run_id"
GENERATED_AT = "generated_at"
# The item text vector in gold.item_features (issue 3 names it text_vec; text_vector also accepted).
TEXT_VECTOR_COLUMNS = ("text_vec", "text_vector")

# Reason codes of a recommendation (candidate source names are the first five).
REASON_CO_VISIT = "co_visit"
REASON_SIMILAR_CONTENT = "similar_content"
REASON_ALS = "als"
REASON_TRENDING = "trending"
REASON_FRESH = "fresh"
REASON_EXPLORE = "explore"
CANDIDATE_SOURCES = [
    REASON_CO_VISIT,
    REASON_SIMILAR_CONTENT,
    REASON_ALS,
    REASON_FRESH,
    REASON_TRENDING,
]  # also the priority order of the reason shown when several sources propose an item
REASON_CODES = [*CANDIDATE_SOURCES, REASON_EXPLORE]

# Event types that count as positive feedback (weight) / mean the user is done with the item.
POSITIVE_EVENT_WEIGHTS = {"click": 1.0, "read": 0.5, "like": 2.0, "share": 3.0}
CONSUMED_EVENT_TYPES = ["click", "read", "like", "share", "hide"]

CANDIDATES_SCHEMA = StructType(
    [
        StructField(RUN_DATE, DateType()),
        StructField(USER_ID, StringType()),
        StructField(ITEM_ID, StringType()),
        StructField(SOURCE, StringType()),
        StructField(SOURCE_SCORE, DoubleType()),
        StructField(DETAIL, StringType()),
    ]
)

# A user's list as the re-ranking returns it (recpipe.scoring.rerank) and the published rows hold
# it: the one place these columns are listed.
LIST_FIELDS = [
    StructField(USER_ID, StringType()),
    StructField(RANK, IntegerType()),
    StructField(ITEM_ID, StringType()),
    StructField(SCORE, DoubleType()),
    StructField(PROPENSITY, DoubleType()),
    StructField(REASON, StringType()),
    StructField(REASON_DETAIL, StringType()),
]
LIST_COLUMNS = [f.name for f in LIST_FIELDS]
RECOMMENDATIONS_SCHEMA = StructType(
    [
        StructField(RUN_DATE, DateType()),
        *LIST_FIELDS,
        StructField(MODEL_VERSION, StringType()),
        StructField(RUN_ID, StringType()),
        StructField(GENERATED_AT, TimestampType()),
    ]
)

# The day's ALS model (recpipe.candidates.als): written by recommend, reused by evaluate.
GOLD_ALS_FACTORS = "gold.als_factors"
ALS_FACTORS_SCHEMA = StructType(
    [
        StructField(RUN_DATE, DateType()),
        StructField("side", StringType()),  # "user" or "item"
        StructField(USER_ID, StringType()),  # set on user rows (so deletion on request finds them)
        StructField(ITEM_ID, StringType()),  # set on item rows
        StructField("features", ArrayType(FloatType())),
        StructField("params", StringType()),  # the fit's settings, JSON
    ]
)

# -- model training and registry (recpipe.model) ------------------------------------------------
MODEL_REGISTRY = "ops.model_registry"
MODEL_STATUSES = ["current", "rejected", "archived"]

MODEL_REGISTRY_SCHEMA = StructType(
    [
        StructField("model_version", StringType()),
        StructField("run_id", StringType()),
        StructField("data_version", LongType()),
        StructField("params", StringType()),
        StructField("metrics", StringType()),
        StructField("path", StringType()),
        StructField("created_at", TimestampType()),
        StructField("status", StringType()),
        StructField("reason", StringType()),
    ]
)
