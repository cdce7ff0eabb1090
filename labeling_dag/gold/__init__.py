"""Gold items (images with known answers) read from a YOLO dataset, a COCO JSON or a Label Studio export.

Every reader returns the same records: the image file, its id (the sha256 of its bytes, as
ingestion computes it, so a gold answer meets its image once the pipeline ingests it) and its
boxes in normalised centre xywh under project class names. Every error names the file and,
where there is one, the image, task or line.

One module per format (:mod:`.yolo`, :mod:`.coco`, :mod:`.label_studio`), the records and checks
they share (:mod:`.items`), and the import of a gold file into the gold table (:mod:`.importing`).
"""
