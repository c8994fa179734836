"""Self-contained HTML reports of the stages (plots embedded as PNG, no external references).

``evaluate``, ``train``, ``ingest`` and ``simulate`` write ``<kind>-<id>.json`` and
``<kind>-<id>.html`` (kind ``simulation`` for ``simulate``) to ``cfg.artifacts_dir("reports")``;
the HTML is rendered from the JSON alone, so ``recpipe report --render`` can rebuild it.
Rendering never fails a stage (:func:`recpipe.reports.store.publish`).
"""
