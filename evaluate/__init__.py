"""Separation, SI-SDR metrics, ensembles, label quality and the Table 1 / figure report."""
