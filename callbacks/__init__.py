"""Lightning callbacks of the zoo (installed as ``zoo.callbacks``)."""
