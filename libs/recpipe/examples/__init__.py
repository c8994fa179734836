"""The training examples stage (``recpipe examples``): labels (:mod:`.labels`), the model's input
columns and the point-in-time join shared with serving (:mod:`.inputs`), and the stage itself,
its checks and the feature spec (:mod:`.build`). It reads the feature tables and never writes
them (the features stage, :mod:`recpipe.features.build`, is their one writer)."""
