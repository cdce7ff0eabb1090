"""The partitions of the pre-label path: one dynamic partition per ingestion batch."""

import dagster as dg

# Added by ``ingest_batch_sensor`` as batches appear in the source folder.
ingest_batches = dg.DynamicPartitionsDefinition(name="ingest_batches")
