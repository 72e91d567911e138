"""Model-card templates and the registry of released checkpoints (package data of ``zoo.model_cards``)."""
