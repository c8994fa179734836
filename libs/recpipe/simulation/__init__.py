"""The closed feedback loop on the synthetic world: ``recpipe simulate`` (:mod:`.loop`), the
serving of one day (:mod:`.serve`) and its measurements (:mod:`.measure`)."""
