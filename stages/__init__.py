"""The DVC stages, one module each, numbered in pipeline order (``dvc.yaml``).

    s1_corpus -> s2_stft -> s3_spatial -> s4_confidence -> s5_train -> s6_relabel -> s7_labels
              -> s8_evaluate -> s9_report

Each module is a leaf: it reads ``params.yaml``, calls library code in ``pipeline``,
``train`` and ``evaluate``, and writes its outputs atomically. Only the CLI
(:mod:`bootsep.cli`) imports these modules; ``bootsep <stage>`` runs ``main``.
"""
