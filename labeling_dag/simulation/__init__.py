"""Everything that exists only to stand in for people: the synthetic dataset generator, the
simulated reviewer and the loop that drives the real jobs and sensors with them (``run-loop``,
``make demo``, the benchmarks). The pipeline never imports this package
(``tests/test_layering.py``); it imports the pipeline.
"""
