"""The items' text inputs: one function for the feature tables, the model's text inputs and the
content-similarity candidates (which read them from ``gold.item_features`` when it exists and
compute them here, the same way, when it does not).

Two representations of the same tokens (letters/digits tokens of two or more characters, English
stop words removed, title first):

- ``text_vec``: TF-IDF over ``num_features`` hashed terms (fixed statistics: the content
  neighbours' cosine and a fixed-width model input);
- ``text_tokens``: the item's first ``max_tokens`` distinct words, which the model hashes and
  embeds itself (:class:`recpipe.features.spec.TokenFeature`): a text representation learned on
  the clicks, with no vocabulary to refit, so an item published today gets its vector today.
"""

from __future__ import annotations

from pyspark.ml import Pipeline
from pyspark.ml.feature import IDF, HashingTF, RegexTokenizer, StopWordsRemover
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recpipe import constants as C

TEXT_VEC = "text_vec"
TEXT_TOKENS = "text_tokens"


def text_vectors(items: DataFrame, num_features: int, max_tokens: int = 0) -> DataFrame:
    """``item_id, text_vec[, text_tokens]``: TF-IDF of title + text as array<float> (HashingTF,
    IDF fit on ``items``: text statistics, no labels) and, with ``max_tokens`` > 0, the first
    ``max_tokens`` distinct words of title + text in order (array<string>, empty without text)."""
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
    cols: list[Column | str] = [C.ITEM_ID, vector_to_array(F.col("_tfidf"), dtype="float32").alias(TEXT_VEC)]
    if max_tokens > 0:
        cols.append(F.slice(F.array_distinct("_words"), 1, max_tokens).alias(TEXT_TOKENS))
    return model.transform(docs).select(*cols)
