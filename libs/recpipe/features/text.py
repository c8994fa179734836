"""The items' text vectors: one function for the feature tables, the model's text input and the
content-similarity candidates (which read them from ``gold.item_features`` when it exists and
compute them here, the same way, when it does not)."""

from __future__ import annotations

from pyspark.ml import Pipeline
from pyspark.ml.feature import IDF, HashingTF, RegexTokenizer, StopWordsRemover
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recpipe import constants as C

TEXT_VEC = "text_vec"


def text_vectors(items: DataFrame, num_features: int) -> DataFrame:
    """``item_id, text_vec``: TF-IDF of title + text as array<float> (letters/digits tokens of
    two or more characters, English stop words removed, HashingTF, IDF fit on ``items``: text
    statistics, no labels)."""
    docs = items.select(
        C.ITEM_ID,
        F.concat_ws(" ", F.coalesce("title", F.lit("")), F.coalesce("text", F.lit(""))).alias("_doc"),
    )
    pipe = Pipeline(
        stages=[
            RegexTokenizer(inputCol="_doc", outputCol="_tokens", pattern=r"[^\p{L}\p{N}]+", minTokenLength=2),
            StopWordsRemover(inputCol="_tokens", outputCol="_words"),
            HashingTF(inputCol="_words", outputCol="_tf", numFeatures=num_features),
            IDF(inputCol="_tf", outputCol="_tfidf"),
        ]
    )
    model = pipe.fit(docs)
    return model.transform(docs).select(
        C.ITEM_ID, vector_to_array(F.col("_tfidf"), dtype="float32").alias(TEXT_VEC)
    )
