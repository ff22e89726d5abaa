"""Production: the deployable bundle and batch scoring of new images."""
