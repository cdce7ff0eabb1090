"""The labelling lifecycle as Dagster software-defined assets, one module per stage."""
