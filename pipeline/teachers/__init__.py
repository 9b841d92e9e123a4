"""Spatial teachers: one module per teacher family (issue 20's ``spatial.method``).

A teacher turns a padded batch of multichannel mixture STFTs into per-bin source
posteriors (the soft masks the students learn from), hard labels and the fitted model's
parameters. Each module is pure numerics over batched arrays, like
:mod:`bootsep.pipeline.spatial` (the paper's teacher, eqs. 1–3); disk, Dask and
configuration stay in the stages and jobs.

- :mod:`.delay`: per-source propagation delays (or directions, when the array geometry is
  known) shared by all frequencies, wrapped-phase mixture with an outlier component
  (MESSL-like), initialised from GCC-PHAT / SRP-PHAT peaks.
- :mod:`.cacgmm`: a complex angular central Gaussian mixture per frequency over all channels
  (Ito et al. 2016), initialised from another teacher's posteriors (the ``delay`` teacher's);
  :func:`~.cacgmm.cacg_jsd` is its confidence fit term.
- :mod:`.iva`: independent vector analysis (pyroomacoustics' AuxIVA, after a per-frequency
  PCA to K channels when there are more microphones), its outputs projected back onto the
  reference microphone and turned into ratio masks.
"""
