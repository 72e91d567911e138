"""What models are aligned FOR and how they are JUDGED: data, rewards, metrics and YAML presets per task.

Installed as ``zoo.tasks``.
"""
