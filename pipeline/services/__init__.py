"""Every state change of the pipeline, by subject. Each runs in a transaction, locks the rows it
decides on, records an event and enqueues follow-up work on commit (``pipeline.queues``).

- ``jobs``: create for an upload, probe start, fail, cancel
- ``planning``: renditions, chunks' units and their queue order
- ``units``: enqueue, start, finish (the rendition's fan-in), fail
- ``packaging``: rendition ready (the job's fan-in), job packaged
- ``publishing``: publish rules, publish, an operator's review
- ``actions``: an operator's restart, retry and priority (``replan``: what a restart redoes)
- ``rules``: operators' changes to publish rules and publisher verification
- ``common``: events, live messages, lineage

The heavy work (ffmpeg, S3 transfers) lives in ``pipeline.steps`` and runs outside these
transactions; it calls back into the ``*_finish`` / ``*_fail`` functions here.
"""
