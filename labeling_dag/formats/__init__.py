"""The file formats the pipeline reads and writes: YOLO datasets (``yolo``), Label Studio's
labelling config, tasks and JSON exports (``label_studio``) and the dataset export writers for
YOLO, COCO and Label Studio (``exports``). They are kept here, apart from the assets and
resources that move the files and from the simulation that generates them, so that each
format's rules (coordinates, field names, validation) are written once, as pure functions with
no Dagster and no I/O beyond the files they are given, and are shared by the product, its tests
and the simulated loop alike.
"""
