"""Secret store components (``secretstores.*``): the secrets API and ``secretKeyRef``."""
