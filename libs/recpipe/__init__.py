"""recpipe: batch recommendation pipeline on Spark, Delta Lake and Horovod."""

__version__ = "0.1.0"
