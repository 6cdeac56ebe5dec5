"""``medseg predict``: an exported model on new scans, masks written in each scan's own geometry.

- ``inputs``: what ``--input`` holds (2-D images, NIfTI/MHA/NRRD volumes, a DICOM series) and how its voxels
  map to the RAS+ arrays ingest slices;
- ``model``: the exported model, its output labels and an honest description of what it is;
- ``replay``: the model's recorded ingestion protocol (or the one given on the command line) applied to a scan;
- ``prompts``: point/box prompts from a JSON file or derived from a prompt mask;
- ``engine``: batched inference with a progress bar;
- ``writers`` and ``dicom_seg``: PNG, NIfTI, MHA/NRRD and DICOM-SEG outputs;
- ``predict``: the step itself (one output folder, written atomically, with ``predict.json``).
"""
