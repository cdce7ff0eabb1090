"""labeling-dag: a Dagster-orchestrated, AI-assisted data-labelling pipeline.

Nothing heavy is imported here: the Dagster code location must load in seconds.
"""
